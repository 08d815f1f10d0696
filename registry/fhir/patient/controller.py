"""``Patient/$locate`` (DESIGN §4.2): where a patient's imaging is, as Endpoints. The only Patient route:
patients are named by IHI, and there are no Patient resources here."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response
from litestar.di import NamedDependency

from registry.auth.requester import Requester
from registry.fhir.patient.resources import LOCATE_PARAMETERS, Locator
from registry.fhirapi.io import fhir_base, fhir_response, self_link
from registry.fhirapi.operations import fhir_operation, operation_input
from registry.fhirapi.search import Criteria
from registry.http import request_id
from schemas.audit import Interaction
from schemas.fhir.canonical import LOCATE_OPERATION
from schemas.fhir.capability import Operation, ResourceCapability

__all__ = ("PATIENT", "PatientController")

_SCOPES = ("system/Basic.rs", "system/Endpoint.rs")

PATIENT = ResourceCapability(
    "Patient",
    "No Patient resources are served (patients are named by IHI); only the $locate operation.",
    (),
    operations=(
        Operation(
            "locate",
            f"OperationDefinition/{LOCATE_OPERATION}",
            "`GET|POST Patient/$locate` (POST: a Parameters body): the gateways holding a patient's imaging, as "
            "Endpoints; registry referrals are followed (federation) and the registries that could not be are named "
            "in an OperationOutcome entry.",
        ),
    ),
)

Locate = NamedDependency[Locator]


class PatientController(Controller):
    """The ``$locate`` operation."""

    path = "/Patient"
    tags = ["fhir"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @fhir_operation(
        "/$locate", name="locatePatient", query=LOCATE_PARAMETERS, scopes=_SCOPES, audit=Interaction.OPERATION
    )
    async def locate(
        self, fhir_locator: Locate, requester: NamedDependency[Requester], request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """A searchset Bundle of the Endpoints of the gateways that hold imaging for the patient (``identifier``),
        asked by GET or by POST with a Parameters body."""
        criteria = Criteria(await operation_input(request))
        self_url = self_link(request)
        bundle = await fhir_locator.locate(
            criteria,
            requester=requester,
            request_id=request_id(request),
            fhir_base=fhir_base(request),
            self_url=self_url,
        )
        return fhir_response(bundle)
