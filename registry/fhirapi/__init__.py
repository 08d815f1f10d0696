"""How FHIR is spoken over HTTP here, for every FHIR route: bodies in, resources out, search semantics."""
