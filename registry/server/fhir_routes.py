"""The FHIR base: ``/fhir/metadata`` and the published conformance resources.

The CapabilityStatement lists what every feature's plugin declares (``FeaturePlugin.capabilities``,
in the order of the plugins), then the conformance resources; each feature mounts its own FHIR
routes under ``/fhir`` (``registry.feature``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from litestar import post

from registry import __version__, errors
from registry.fhir.conformance import CONFORMANCE, Conformance, conformance_controllers
from registry.fhir.metadata import Metadata, MetadataController
from registry.fhirapi.io import fhir_route
from schemas.fhir.definitions import conformance_resources

if TYPE_CHECKING:
    from collections.abc import Iterable

    from litestar.types import ControllerRouterHandler

    from schemas.fhir.canonical import Canonicals
    from schemas.fhir.capability import ResourceCapability

__all__ = ("base_routes", "conformance", "metadata")


def metadata(capabilities: Iterable[ResourceCapability], canon: Canonicals) -> Metadata:
    """The server's capabilities: the features' resources, then the conformance resources (dated now)."""
    return Metadata(
        (*capabilities, *CONFORMANCE), canon=canon, version=__version__, date=datetime.now(UTC).replace(microsecond=0)
    )


def conformance(canon: Canonicals) -> Conformance:
    """The published StructureDefinitions, CodeSystems, ValueSets, SearchParameters and OperationDefinitions."""
    return Conformance(conformance_resources(canon, __version__))


@post("/", operation_id="transactionOrBatch", status_code=405, opt=fhir_route(public=True))
async def transaction_or_batch() -> None:
    """``POST [base]`` (a transaction or batch Bundle): not supported, 405 (records in bulk: the native batch).

    Raises:
        MethodNotAllowed: always.
    """
    raise errors.MethodNotAllowed(
        "transaction and batch Bundles are not supported; register records one by one (POST Basic) or in bulk "
        "through the native batch (POST /registry/records:batch)"
    )


def base_routes() -> list[ControllerRouterHandler]:
    """The handlers of the FHIR base itself: metadata, one controller per conformance resource type, and the
    refusal of transactions and batches."""
    return [MetadataController, *conformance_controllers(CONFORMANCE), transaction_or_batch]
