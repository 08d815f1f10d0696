"""Who asks, why and for whom: the ``Requester`` every disclosure is decided for (DESIGN §12).

A consumer states its purpose of use and the clinician it acts for in two headers,
``IEF-Purpose-Of-Use`` (one v3 PurposeOfUse code) and ``IEF-On-Behalf-Of`` (an HPI-I), or as the
claims ``purpose_of_use`` and ``requesting_practitioner`` of its token (a header wins over a claim).
The client's registration adds what it is cleared for (security labels), whether it may break the
glass, and which purposes it may state at all. The guard builds the ``Requester`` once per request
(``requester_of``) and leaves it in the request's state, where routes take it as a dependency and
the audit row reads purpose and practitioner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from registry import errors
from registry.route import REQUESTER_KEY
from schemas.privacy import parse_hpii, parse_purpose
from schemas.types import InvalidValueError

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection

    from registry.auth.scopes import Principal

__all__ = (
    "ON_BEHALF_OF_HEADER",
    "PRACTITIONER_CLAIM",
    "PURPOSE_CLAIM",
    "PURPOSE_HEADER",
    "Requester",
    "check_purpose",
    "requester_from",
    "requester_in",
    "requester_of",
)

PURPOSE_HEADER = b"ief-purpose-of-use"
ON_BEHALF_OF_HEADER = b"ief-on-behalf-of"
PURPOSE_CLAIM = "purpose_of_use"
PRACTITIONER_CLAIM = "requesting_practitioner"


@dataclass(frozen=True, slots=True)
class Requester:
    """The party a disclosure is decided for.

    Attributes:
        client_id: the client asking (a subscription's owner, for a notification).
        service_id: the service the client is bound to.
        clearances: the security labels it is cleared for.
        break_glass: it may state ``ETREAT`` to override a patient's restrictions.
        purpose: the purpose of use stated (None: none stated).
        practitioner: the HPI-I of the clinician it acts for (None: none stated).
        operator: the client holds ``admin`` (it may list any service's records; what it is shown
            is decided like anyone's).
    """

    client_id: str
    service_id: str
    clearances: frozenset[str] = frozenset()
    break_glass: bool = False
    purpose: str | None = None
    practitioner: str | None = None
    operator: bool = False

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        """What makes two requests of one client the same request to the decision point and the gateways."""
        return (self.client_id, self.purpose, self.practitioner)


def check_purpose(principal: Principal, purpose: str | None) -> None:
    """Refuse a purpose of use the client is not registered to state (no registered purposes: any).

    Raises:
        Forbidden: a purpose outside the client's registered purposes.
    """
    if purpose is not None and principal.purposes and purpose not in principal.purposes:
        message = f"client {principal.client_id} is not registered to state the purpose of use {purpose}"
        raise errors.Forbidden(message, code=errors.ErrorCode.PURPOSE_NOT_ALLOWED)


def _checked(value: str, parse: Any, where: str) -> str:
    try:
        return str(parse(value))
    except InvalidValueError as exc:
        message = f"{where}: {exc}"
        raise errors.InvalidInput(
            message, issues=[errors.Issue(message, where)], code=errors.ErrorCode.INVALID_PRIVACY_CONTEXT
        ) from None


def _stated_headers(connection: ASGIConnection[Any, Any, Any, Any]) -> tuple[str | None, str | None]:
    """The ``IEF-Purpose-Of-Use`` and ``IEF-On-Behalf-Of`` values of a request (one pass over its headers).

    Raises:
        InvalidInput: either is given more than once.
    """
    found: dict[bytes, str] = {}
    for key, value in connection.scope.get("headers", ()):
        if key in (PURPOSE_HEADER, ON_BEHALF_OF_HEADER):
            if key in found:
                where = key.decode()
                message = f"{where} is given once"
                raise errors.InvalidInput(
                    message, issues=[errors.Issue(message, where)], code=errors.ErrorCode.INVALID_PRIVACY_CONTEXT
                )
            found[key] = value.decode("latin-1")
    return found.get(PURPOSE_HEADER), found.get(ON_BEHALF_OF_HEADER)


def requester_of(connection: ASGIConnection[Any, Any, Any, Any], principal: Principal) -> Requester:
    """The requester of a request: the principal, and the purpose and practitioner it states (headers
    first, then its token's claims), checked against what the client is registered to state.

    Raises:
        InvalidInput: a header that is not a PurposeOfUse code or an HPI-I (or is repeated).
        Forbidden: a purpose the client is not registered to state.
    """
    purpose_header, practitioner_header = _stated_headers(connection)
    purpose = (
        _checked(purpose_header, parse_purpose, "IEF-Purpose-Of-Use")
        if purpose_header is not None
        else principal.purpose
    )
    practitioner = (
        _checked(practitioner_header, parse_hpii, "IEF-On-Behalf-Of")
        if practitioner_header is not None
        else principal.practitioner
    )
    check_purpose(principal, purpose)
    return Requester(
        client_id=principal.client_id,
        service_id=principal.service_id,
        clearances=principal.clearances,
        break_glass=principal.break_glass,
        purpose=purpose,
        practitioner=practitioner,
        operator=principal.is_admin,
    )


def requester_in(state: dict[str, Any]) -> Requester | None:
    """The requester a request's state holds (set by the guard), if any."""
    value = state.get(REQUESTER_KEY)
    return value if isinstance(value, Requester) else None


def requester_from(connection: ASGIConnection[Any, Any, Any, Any]) -> Requester:
    """The requester of a request on a route that needs a token (what a handler reads without a dependency).

    Raises:
        Unauthenticated: no requester (only on a public route that asks for one: a wiring mistake).
    """
    requester = requester_in(connection.scope["state"])
    if requester is None:
        raise errors.Unauthenticated("this needs a bearer token", token_sent=False)
    return requester
