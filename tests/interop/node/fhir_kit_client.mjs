// fhir-kit-client, unmodified, against a live ief-registry (run by tests/interop/test_fhir_kit_client.py).
// Configuration comes from the environment; every answer is printed as one JSON object for the test to check.
import { Client } from 'fhir-kit-client';

const { FHIR_BASE, TOKEN, IHI, IHI_SYSTEM, GATEWAY, RECORD, SUBSCRIPTION } = process.env;
const client = new Client({ baseUrl: FHIR_BASE, bearerToken: TOKEN });

const smart = await client.smartAuthMetadata();
const capabilityStatement = await client.capabilityStatement();
const created = await client.create({ resourceType: 'Basic', body: JSON.parse(RECORD) });
const search = await client.search({ resourceType: 'Basic', searchParams: { patient: IHI } });
const locate = await client.operation({
  name: '$locate',
  resourceType: 'Patient',
  input: {
    resourceType: 'Parameters',
    parameter: [{ name: 'identifier', valueIdentifier: { system: IHI_SYSTEM, value: IHI } }],
  },
});
const subscription = await client.create({ resourceType: 'Subscription', body: JSON.parse(SUBSCRIPTION) });
const status = await client.operation({ name: '$status', resourceType: 'Subscription', id: subscription.id });

console.log(JSON.stringify({
  smart: { tokenUrl: smart.tokenUrl ? String(smart.tokenUrl) : null },
  capabilityStatement, created, search, locate, subscription, status, gateway: GATEWAY,
}));
