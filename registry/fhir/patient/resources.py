"""``Patient/$locate``: the FHIR rules over ``RecordService``'s federated look-up. No HTTP here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from registry import errors
from registry.fhirapi.search import Criteria, code_token, ihi_token
from schemas.fhir.locate import locate_bundle

if TYPE_CHECKING:
    from registry.auth.requester import Requester
    from registry.records.service import RecordService
    from schemas.fhir.canonical import Canonicals

__all__ = ("LOCATE_PARAMETERS", "Locator")

LOCATE_PARAMETERS = ("identifier", "follow")
"""The input parameters of ``$locate`` (besides ``_format``)."""

_follow = code_token({"true": True, "false": False})


class Locator:
    """Answers ``$locate``: the gateways that hold imaging for one patient, federation hops followed."""

    def __init__(self, records: RecordService, canon: Canonicals) -> None:
        self._records = records
        self._canon = canon

    async def locate(
        self, criteria: Criteria, *, requester: Requester, request_id: str, fhir_base: str, self_url: str
    ) -> dict[str, Any]:
        """The searchset Bundle of Endpoints (and the outcome of unresolved registries) for the patient named.

        Raises:
            MalformedRequest: ``identifier`` or ``follow`` is missing where required or given more than once.
            InvalidInput: the identifier is not a valid IHI (or of another system), ``follow`` not a boolean.
        """
        ihis = criteria.any_of({"identifier": ihi_token})
        if not ihis or len(ihis) != 1:
            message = "$locate names exactly one patient: identifier=<IHI system>|<IHI>"
            raise errors.MalformedRequest(message, issues=[errors.Issue(message, "identifier")])
        follows = criteria.any_of({"follow": _follow}, once=True)
        if follows is not None and len(follows) != 1:
            message = "follow is true or false, once"
            raise errors.MalformedRequest(message, issues=[errors.Issue(message, "follow")])
        follow = True if follows is None else follows.pop()
        (ihi,) = ihis
        found = await self._records.for_ihi(ihi, requester=requester, follow=follow, request_id=request_id)
        return locate_bundle(
            self._canon, found.records, found.unresolved or [], fhir_base=fhir_base, self_url=self_url,
            withheld=found.withheld,
        )  # fmt: skip
