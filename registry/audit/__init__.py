"""The audit trail (DESIGN section 8): one FHIR AuditEvent per patient-linked request, hash-chained.

- ``context``: the per-request audit context and how a row is built from it (services note
  patients and records through it);
- ``middleware``: the ASGI piece that makes sure no patient-linked response leaves without its row;
- ``trail``: recording (write transactions, group commit) and the sealer task;
- ``writer``: the group-commit writer; ``chain``: sealing the hash chain month by month;
- ``partitions``: monthly partitions made ahead; ``checkpoints``: each sealed month's signed
  checkpoint; ``verify``: ``audit verify``; ``export``: a month as Bulk NDJSON, checked offline;
  ``retention``: ``audit prune``; ``operator`` and ``console``: the operator's commands;
- ``repository``: the audit SQL; ``service`` and ``controller``: ``GET /fhir/AuditEvent``;
  ``api``: ``GET /audit/checkpoints``.
"""
