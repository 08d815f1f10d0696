"""Filter criteria of the registration topic (pure): parsed, checked and written canonically.

A filter is ``[Basic?|Basic.]name=value`` (the IG's own examples use ``?``, Inferno's samples
``.``, others the bare form; all three are accepted). Filters are AND-ed; within ``service`` and
``status`` a comma separates alternatives. Names:

- ``patient``: one IHI, as ``<IHI system>|<IHI>``, a bare IHI or ``Patient/<IHI>``;
- ``service``: IEF service IDs, ``<service ID system>|<id>`` or bare;
- ``status``: the record's new status, ``active``, ``removed`` or ``archived``;
- ``patient-group``: a cohort, ``Group/{id}`` (a Group of the subscribing client): the patients
  who are its members when the event happens (a changed Group counts from the next event).

Modifiers (``patient:identifier=``) and other resource types are refused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from registry import errors
from schemas.types import IHI_SYSTEM, IHI_SYSTEM_ALIASES, InvalidValueError, RecordStatus, parse_ihi, parse_service_id

__all__ = ("FILTER_NAMES", "Filters", "parse_filters")

FILTER_NAMES = ("patient", "service", "status", "patient-group")
_RESOURCE = "Basic"


@dataclass(frozen=True, slots=True)
class Filters:
    """What a subscription matches: None means any."""

    ihi: str | None = None
    services: tuple[str, ...] | None = None
    statuses: tuple[str, ...] | None = None
    group: uuid.UUID | None = None

    def canonical(self) -> list[str]:
        """The filters as this server writes them back (bare form, IHI with its system)."""
        written: list[str] = []
        if self.ihi is not None:
            written.append(f"patient={IHI_SYSTEM}|{self.ihi}")
        if self.services is not None:
            written.append("service=" + ",".join(self.services))
        if self.statuses is not None:
            written.append("status=" + ",".join(self.statuses))
        if self.group is not None:
            written.append(f"patient-group=Group/{self.group}")
        return written


def _bad(message: str, where: str, code: errors.ErrorCode | None = None) -> errors.InvalidInput:
    return errors.InvalidInput(message, issues=[errors.Issue(message, where)], code=code)


def _split(text: str, where: str) -> tuple[str, str]:
    name, equals, value = text.strip().partition("=")
    if not equals or not value:
        raise _bad(f"a filter is name=value, not {text!r}", where)
    for separator in ("?", "."):
        resource, found, rest = name.partition(separator)
        if found:
            if resource != _RESOURCE:
                raise _bad(f"filters apply to {_RESOURCE} (the registry record), not {resource!r}", where)
            name = rest
            break
    if ":" in name:
        raise _bad(f"filter modifiers are not supported ({name!r})", where)
    if name not in FILTER_NAMES:
        raise _bad(f"unknown filter {name!r}; this topic filters by {', '.join(FILTER_NAMES)}", where)
    return name, value.strip()


_INVALID_IHI = errors.ErrorCode.INVALID_IHI


def _ihi(value: str, where: str) -> str:
    if "," in value:
        raise _bad("a subscription filters by one patient; make one subscription per patient", where)
    system, bar, code = value.rpartition("|")
    if bar and system not in IHI_SYSTEM_ALIASES:
        raise _bad(f"the patient filter names the IHI system {IHI_SYSTEM}, not {system!r}", where, _INVALID_IHI)
    try:
        return parse_ihi(code.removeprefix("Patient/") if not bar else code)
    except InvalidValueError as exc:
        raise _bad(f"invalid IHI in the patient filter: {exc}", where, _INVALID_IHI) from None


def _services(value: str, where: str, service_system: str) -> tuple[str, ...]:
    found: list[str] = []
    for part in value.split(","):
        system, bar, code = part.strip().rpartition("|")
        if bar and system != service_system:
            raise _bad(f"the service filter names the service ID system {service_system}, not {system!r}", where)
        try:
            service_id = parse_service_id(code)
        except InvalidValueError as exc:
            raise _bad(f"invalid service ID in the service filter: {exc}", where) from None
        if service_id not in found:
            found.append(service_id)
    return tuple(found)


def _statuses(value: str, where: str) -> tuple[str, ...]:
    found: list[str] = []
    for part in value.split(","):
        code = part.strip().rpartition("|")[2]
        if code not in RecordStatus._value2member_map_:
            raise _bad(f"unknown status {code!r} in the status filter; use active, removed or archived", where)
        if code not in found:
            found.append(code)
    return tuple(found)


def _group(value: str, where: str) -> uuid.UUID:
    try:
        return uuid.UUID(value.removeprefix("Group/"))
    except ValueError:
        raise _bad(f"the patient-group filter names a Group: Group/<id>, not {value!r}", where) from None


def parse_filters(items: list[tuple[str, str]], *, service_system: str) -> Filters:
    """Read filter criteria (text, where each came from) into ``Filters``.

    Raises:
        InvalidInput: an unknown filter, a modifier, another resource type, a bad value, or a
            filter given twice; the issue names where.
    """
    seen: dict[str, str] = {}
    ihi: str | None = None
    services: tuple[str, ...] | None = None
    statuses: tuple[str, ...] | None = None
    group: uuid.UUID | None = None
    for text, where in items:
        name, value = _split(text, where)
        if name in seen:
            raise _bad(f"give the {name} filter once (commas separate alternatives)", where)
        seen[name] = where
        if name == "patient":
            ihi = _ihi(value, where)
        elif name == "service":
            services = _services(value, where, service_system)
        elif name == "patient-group":
            group = _group(value, where)
        else:
            statuses = _statuses(value, where)
    if ihi is not None and group is not None:
        raise _bad("a subscription follows one patient or one cohort (patient-group), not both", where)
    return Filters(ihi=ihi, services=services, statuses=statuses, group=group)
