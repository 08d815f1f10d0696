"""Cohorts as FHIR ``Group`` (type ``person``, ``actual``): members named by IHI identifier.

Bodies of up to 100,000 members are decoded the one way (``schemas.strictjson``: nesting bounded,
repeated keys refused) and checked by hand (the R4B models would take seconds over such a list):
what is checked is what a cohort needs: type, actual, and each member's IHI identifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas import strictjson
from schemas.fhir.parse import InvalidResource, Issues, NotJson
from schemas.types import IHI_SYSTEM, IHI_SYSTEM_ALIASES, InvalidValueError, parse_ihi

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ("GroupClaim", "group_resource", "read_group")

_MAX_ISSUES = 20


@dataclass(frozen=True, slots=True)
class GroupClaim:
    """What a Group body asks to store."""

    id: str | None
    name: str | None
    ihis: list[str]


def read_group(body: bytes) -> GroupClaim:
    """Parse a cohort ``Group``.

    Raises:
        NotJson: the body is not JSON, is nested too deep or repeats a key.
        InvalidResource: not a Group of patients named by IHI; one issue per problem (the first 20).
    """
    try:
        data = strictjson.decode(body)
    except strictjson.JsonError as exc:
        raise NotJson(str(exc)) from exc  # the cause says which refusal it was
    issues: Issues = []
    if not isinstance(data, dict) or data.get("resourceType") != "Group":
        raise InvalidResource("the body is not a Group", [("resourceType must be Group", "Group")])
    if data.get("type") != "person":
        issues.append(("a cohort is a Group of type person", "Group.type"))
    if data.get("actual") is not True:
        issues.append(("a cohort lists its members: actual is true", "Group.actual"))
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        issues.append(("name is a string", "Group.name"))
    ihis: list[str] = []
    members = data.get("member") or []
    if not isinstance(members, list):
        members = []
        issues.append(("member is a list", "Group.member"))
    for index, member in enumerate(members):
        where = f"Group.member[{index}].entity.identifier"
        identifier = ((member or {}).get("entity") or {}).get("identifier") if isinstance(member, dict) else None
        if not isinstance(identifier, dict) or identifier.get("system") not in IHI_SYSTEM_ALIASES:
            issues.append((f"a member is named by its IHI identifier (system {IHI_SYSTEM})", where))
        else:
            try:
                ihis.append(parse_ihi(str(identifier.get("value") or "")))
            except InvalidValueError as exc:
                issues.append((f"invalid IHI: {exc}", f"{where}.value"))
        if len(issues) >= _MAX_ISSUES:
            break
    if issues:
        raise InvalidResource("the Group is not a cohort of patients named by IHI", issues)
    return GroupClaim(id=data.get("id"), name=name, ihis=ihis)


def group_resource(
    group_id: str, *, name: str | None, members: tuple[str, ...], version: int, updated: datetime
) -> dict[str, Any]:
    """A stored cohort as a ``Group``."""
    resource: dict[str, Any] = {
        "resourceType": "Group",
        "id": group_id,
        "meta": {"versionId": str(version), "lastUpdated": updated},
        "type": "person",
        "actual": True,
        "quantity": len(members),
    }
    if name:
        resource["name"] = name
    if members:
        resource["member"] = [{"entity": {"identifier": {"system": IHI_SYSTEM, "value": ihi}}} for ihi in members]
    return resource
