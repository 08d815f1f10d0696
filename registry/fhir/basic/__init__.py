"""``Basic`` with the RegistryRecord profile: registry records as FHIR resources."""
