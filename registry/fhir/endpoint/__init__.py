"""``Endpoint``: the member services of the directory as FHIR resources."""
