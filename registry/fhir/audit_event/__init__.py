"""``AuditEvent``: the audit trail as FHIR resources."""
