"""The registry's own FHIR resources (DESIGN 4.2): one package per resource, each a controller (HTTP
only) and its resources (the FHIR mapping over the records, directory and audit services), plus the
CapabilityStatement (``metadata``) and the published conformance resources (``conformance``).
``plugin.py`` contributes them to the server; ``registry.fhirapi`` is the FHIR plumbing they share.
"""
