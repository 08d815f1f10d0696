"""The server process's start-up heap, put out of the garbage collector's way once the app is built.

Importing the application (Litestar, pydantic-core's validators, the R4B models, asyncpg, …)
leaves about 100,000 long-lived objects. CPython's full collection walks every tracked object
and runs whenever enough new objects have survived younger collections: on this heap one takes
about 75 ms on the 2-core machines of ``docs/benchmarks.md``, and every request in flight waits
for it (a p99 that comes and goes with when the collection happens to fall). ``settle`` loads the
FHIR models the server parses, collects once and freezes what is left (``gc.freeze``: moved to a
generation no collection walks), so later full collections walk only what was made since; the
frozen objects live as long as the process, as they would have anyway.
"""

from __future__ import annotations

import gc

from fhir.resources.R4B import get_fhir_model_class

__all__ = ("PRELOADED", "settle")

PRELOADED = (
    "AuditEvent",
    "Basic",
    "Bundle",
    "CapabilityStatement",
    "Consent",
    "DocumentReference",
    "Endpoint",
    "Group",
    "ImagingStudy",
    "OperationOutcome",
    "Organization",
    "Parameters",
    "Subscription",
)
"""The R4B models the server validates with or builds, loaded before the heap is frozen (a model loaded
later is only collected as usual)."""


def settle() -> int:
    """Load the models, collect once and freeze the heap; how many objects were frozen."""
    for resource_type in PRELOADED:
        get_fhir_model_class(resource_type)
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
