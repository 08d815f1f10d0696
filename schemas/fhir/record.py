"""The RegistryRecord profile of ``Basic``: a registry record as a FHIR resource, both ways.

Shape (``docs/fhir.md`` has the full contract)::

    Basic
      id                 records.record_id
      meta.versionId     records.version
      meta.lastUpdated   records.last_updated
      meta.profile       {canonical}/StructureDefinition/RegistryRecord
      meta.security      records.security_labels (v3 Confidentiality and v3-ActCode sensitivity codings)
      extension          registry-record-service (valueIdentifier: the IEF service ID)
                         registry-record-status  (valueCode: active | removed | archived)
                         registry-record-type    (valueCode: record | registry)
      code               {canonical}/CodeSystem/basic-resource-type#registry-record
      subject.identifier the patient's IHI (there are no Patient resources here)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from schemas.fhir.canonical import EXT_REASON, EXT_SERVICE, EXT_STATUS, EXT_TYPE
from schemas.fhir.parse import InvalidResource, Issues, load_resource
from schemas.privacy import label_system, parse_label
from schemas.types import (
    IHI_SYSTEM,
    IHI_SYSTEM_ALIASES,
    InvalidValueError,
    RecordStatus,
    RecordType,
    parse_ihi,
    parse_service_id,
)

if TYPE_CHECKING:
    from datetime import datetime

    from schemas.fhir.canonical import Canonicals

__all__ = (
    "BASIC_CODE",
    "BASIC_CODE_SYSTEM",
    "REFUSED_ELEMENTS",
    "RecordClaim",
    "read_registry_record",
    "registry_record",
)

BASIC_CODE_SYSTEM = "basic-resource-type"
"""Id of the code system of ``Basic.code`` values defined by the IEF."""

BASIC_CODE = "registry-record"
"""The ``Basic.code`` of a RegistryRecord."""

REFUSED_ELEMENTS = ("implicitRules", "contained", "modifierExtension", "identifier", "created", "author")
"""Basic elements the profile forbids: a record holds nothing else, and nothing is silently dropped."""

_IHI = "Basic.subject.identifier.value"


@dataclass(frozen=True, slots=True)
class RecordClaim:
    """What a RegistryRecord body asks to store, validated, with where each key part came from."""

    id: str | None
    ihi: str
    service_id: str
    status: RecordStatus
    type: RecordType
    service_expression: str
    ihi_expression: str = _IHI
    reason: str | None = None
    labels: list[str] = field(default_factory=list)
    """Its security labels (``meta.security``; none given: none, as FHIR's update replaces the resource)."""


def registry_record(
    canon: Canonicals,
    *,
    record_id: str,
    ihi: str,
    service_id: str,
    status: str,
    type_: str,
    version: int,
    last_updated: datetime,
    reason: str | None = None,
    labels: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A stored record as a RegistryRecord ``Basic`` resource (a version with the ``reason`` its change gave;
    its security labels in ``meta.security``)."""
    why = [{"url": canon.extension(EXT_REASON), "valueString": reason}] if reason else []
    meta: dict[str, Any] = {"versionId": str(version), "lastUpdated": last_updated, "profile": [canon.registry_record]}
    if labels:
        meta["security"] = [{"system": label_system(label), "code": label} for label in labels]
    return {
        "resourceType": "Basic",
        "id": record_id,
        "meta": meta,
        "extension": [
            {
                "url": canon.extension(EXT_SERVICE),
                "valueIdentifier": {"system": canon.service_id_system, "value": service_id},
            },
            {"url": canon.extension(EXT_STATUS), "valueCode": status},
            {"url": canon.extension(EXT_TYPE), "valueCode": type_},
            *why,
        ],
        "code": {
            "coding": [
                {"system": canon.code_system(BASIC_CODE_SYSTEM), "code": BASIC_CODE, "display": "IEF registry record"}
            ]
        },
        "subject": {"identifier": {"system": IHI_SYSTEM, "value": ihi}},
    }


class _Reader:
    """Collects every problem of one body before refusing it."""

    def __init__(self, canon: Canonicals) -> None:
        self.canon = canon
        self.issues: Issues = []

    def problem(self, message: str, where: str) -> None:
        self.issues.append((message, where))

    def profile(self, data: dict[str, Any]) -> None:
        profiles = (data.get("meta") or {}).get("profile")
        if profiles and self.canon.registry_record not in profiles:
            self.problem(f"meta.profile must include {self.canon.registry_record}", "Basic.meta.profile")
        for name in REFUSED_ELEMENTS:
            if data.get(name) not in (None, [], ""):
                self.problem(f"a RegistryRecord has no {name}", f"Basic.{name}")
        codings = (data.get("code") or {}).get("coding") or []
        system = self.canon.code_system(BASIC_CODE_SYSTEM)
        if not any(c.get("system") == system and c.get("code") == BASIC_CODE for c in codings):
            self.problem(f"Basic.code must carry the coding {system}#{BASIC_CODE}", "Basic.code")

    def labels(self, data: dict[str, Any]) -> list[str]:
        """The security labels of ``meta.security``: v3 Confidentiality or v3-ActCode sensitivity codes."""
        found: list[str] = []
        for index, coding in enumerate((data.get("meta") or {}).get("security") or []):
            where = f"Basic.meta.security[{index}]"
            code = coding.get("code") or ""
            try:
                label = parse_label(code)
            except InvalidValueError as exc:
                self.problem(str(exc), f"{where}.code")
                continue
            if coding.get("system") not in (None, label_system(label)):
                self.problem(f"the label {label} is a code of {label_system(label)}", f"{where}.system")
                continue
            found.append(label)
        return sorted(set(found))

    def ihi(self, data: dict[str, Any]) -> str | None:
        subject = data.get("subject") or {}
        if subject.get("reference"):
            self.problem("the patient is named by identifier (the IHI), not by reference", "Basic.subject.reference")
        identifier = subject.get("identifier")
        if not identifier:
            self.problem("a RegistryRecord names its patient in subject.identifier", "Basic.subject.identifier")
            return None
        if identifier.get("system") not in IHI_SYSTEM_ALIASES:
            self.problem(f"the subject identifier system must be {IHI_SYSTEM}", "Basic.subject.identifier.system")
        try:
            return parse_ihi(identifier.get("value") or "")
        except InvalidValueError as exc:
            self.problem(f"invalid IHI: {exc}", _IHI)
            return None

    def service(self, ext: dict[str, Any], where: str) -> str | None:
        identifier = ext.get("valueIdentifier")
        if identifier is None:
            self.problem("the service extension carries valueIdentifier", where)
            return None
        if identifier.get("system") != self.canon.service_id_system:
            self.problem(f"the service identifier system must be {self.canon.service_id_system}", f"{where}.system")
        try:
            return parse_service_id(identifier.get("value") or "")
        except InvalidValueError as exc:
            self.problem(f"invalid service ID: {exc}", f"{where}.value")
            return None

    def reason(self, ext: dict[str, Any], where: str) -> str | None:
        value = ext.get("valueString")
        if not isinstance(value, str) or not 1 <= len(value.strip()) <= 200:
            self.problem("the reason extension carries valueString, 1 to 200 characters", f"{where}.valueString")
            return None
        return value.strip()

    def code(self, ext: dict[str, Any], where: str, allowed: type[RecordStatus] | type[RecordType]) -> str | None:
        value = ext.get("valueCode")
        if value is None:
            self.problem("this extension carries valueCode", where)
            return None
        if value not in allowed._value2member_map_:
            choices = ", ".join(str(member) for member in allowed)
            self.problem(f"unknown code {value!r}; use one of: {choices}", f"{where}.valueCode")
            return None
        return str(value)

    def extensions(self, data: dict[str, Any]) -> dict[str, tuple[str | None, str]]:
        """The known extensions' values by id, with where each was found."""
        known = {self.canon.extension(name): name for name in (EXT_SERVICE, EXT_STATUS, EXT_TYPE, EXT_REASON)}
        found: dict[str, tuple[str | None, str]] = {}
        for index, ext in enumerate(data.get("extension") or []):
            where = f"Basic.extension[{index}]"
            name = known.get(ext.get("url"))
            if name is None:
                self.problem(f"unknown extension {ext.get('url')!r}", f"{where}.url")
                continue
            if name in found:
                self.problem(f"the extension {ext.get('url')} appears more than once", where)
                continue
            if ext.get("extension"):
                self.problem("this extension has no nested extensions", f"{where}.extension")
            if name == EXT_SERVICE:
                found[name] = (self.service(ext, f"{where}.valueIdentifier"), f"{where}.valueIdentifier.value")
            elif name == EXT_REASON:
                found[name] = (self.reason(ext, where), where)
            else:
                found[name] = (self.code(ext, where, RecordStatus if name == EXT_STATUS else RecordType), where)
        if EXT_SERVICE not in found:
            self.problem(
                f"a RegistryRecord names its service in the extension {self.canon.extension(EXT_SERVICE)}",
                "Basic.extension",
            )
        return found


def read_registry_record(body: bytes, canon: Canonicals) -> RecordClaim:
    """Parse and validate a RegistryRecord body (create or update).

    Absent status means ``active`` and absent type ``record``, as on the native API.

    Raises:
        NotJson: the body is not JSON.
        InvalidResource: not a valid Basic, or not a valid RegistryRecord; one issue per problem.
    """
    data = load_resource(body, "Basic")
    reader = _Reader(canon)
    reader.profile(data)
    labels = reader.labels(data)
    ihi = reader.ihi(data)
    found = reader.extensions(data)
    service_id, service_where = found.get(EXT_SERVICE, (None, "Basic.extension"))
    status = found.get(EXT_STATUS, (RecordStatus.ACTIVE, ""))[0]
    type_ = found.get(EXT_TYPE, (RecordType.RECORD, ""))[0]
    reason = found.get(EXT_REASON, (None, ""))[0]
    if reader.issues or ihi is None or service_id is None or status is None or type_ is None:
        raise InvalidResource("the Basic resource is not a valid RegistryRecord", reader.issues)
    return RecordClaim(
        id=data.get("id"),
        ihi=ihi,
        service_id=service_id,
        status=RecordStatus(status),
        type=RecordType(type_),
        service_expression=service_where,
        reason=reason,
        labels=labels,
    )
