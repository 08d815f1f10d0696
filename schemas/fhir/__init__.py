"""FHIR R4 wire shapes. The only package that imports ``fhir.resources`` (R4B models)."""
