"""``Group``: cohorts of patients a subscriber follows (``patient-group=Group/{id}``). Create, update, read.

The routes sit behind the batch body limit (a Group holds up to 100,000 members); the rules are
``GroupService``'s. A Group names patients, so each request is audited: its row says which Group
and how many members (not every IHI of up to 100,000: ADR 0022).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from litestar import Controller, Request, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import PathParameter

from broker.subscriptions.groups import GroupService
from registry.auth.scopes import Principal
from registry.fhirapi.io import etag, fhir_base, fhir_response, fhir_route, last_modified, read_resource
from schemas.audit import Interaction
from schemas.fhir.capability import ResourceCapability
from schemas.fhir.group import group_resource, read_group

if TYPE_CHECKING:
    from broker.subscriptions.groups import StoredGroup

__all__ = ("GROUP", "GroupController")

GroupId = Annotated[str, PathParameter(description="The Group id.")]

GROUP = ResourceCapability(
    "Group",
    "Cohorts (type person, actual) of patients named by IHI identifier, up to 100,000 members: a subscription "
    "filter `patient-group=Group/{id}` follows every member. Owned by the creating client (others get 404; admin "
    "sees all); an update replaces the members, which decide what is delivered from the next event on.",
    ("read", "create", "update"),
)

Groups = NamedDependency[GroupService]
Caller = NamedDependency[Principal]


def _answer(stored: StoredGroup, *, status: int = 200, base: str | None = None) -> Response[bytes]:
    headers = {"ETag": etag(stored.version), "Last-Modified": last_modified(stored.updated_at)}
    if base is not None:
        headers["Location"] = f"{base}/Group/{stored.group_id}"
    resource = group_resource(
        str(stored.group_id), name=stored.name, members=stored.members, version=stored.version,
        updated=stored.updated_at,
    )  # fmt: skip
    return fhir_response(resource, status=status, headers=headers)


class GroupController(Controller):
    """Cohorts as Group resources."""

    path = "/Group"
    tags = ["fhir"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @post(
        "/",
        operation_id="createGroup",
        status_code=201,
        opt=fhir_route(scopes=("system/Group.cu",), audit=Interaction.CREATE),
    )
    async def create(self, groups: Groups, principal: Caller, request: Request[Any, Any, Any]) -> Response[bytes]:
        """Create a cohort of the caller's (201)."""
        claim = await read_resource(request, read_group)
        stored = await groups.create(claim.name, claim.ihis, actor=principal)
        return _answer(stored, status=201, base=fhir_base(request))

    @put(
        "/{group_id:str}",
        operation_id="updateGroup",
        opt=fhir_route(scopes=("system/Group.cu",), audit=Interaction.UPDATE),
    )
    async def update(
        self, groups: Groups, principal: Caller, group_id: GroupId, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Replace a cohort's members (and name)."""
        claim = await read_resource(request, read_group)
        return _answer(await groups.replace(group_id, claim.name, claim.ihis, actor=principal))

    @get(
        "/{group_id:str}", operation_id="readGroup", opt=fhir_route(scopes=("system/Group.rs",), audit=Interaction.READ)
    )
    async def read(self, groups: Groups, principal: Caller, group_id: GroupId) -> Response[bytes]:
        """Read a cohort with its members."""
        return _answer(await groups.read(group_id, actor=principal))
