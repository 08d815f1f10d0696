"""``RouteSpec``: what a route takes and what it needs of its caller, declared once on its handler.

Every route handler (or the controller or router above it) declares ``opt=RouteSpec(...).opt``:

- who may call it: ``public=True`` (no token: health, metadata, discovery documents, the token
  endpoint, OpenAPI) or the ``scopes`` its bearer token must grant. A route that declares neither
  needs ``admin``: ``registry.auth.guard`` fails closed;
- the query parameters it takes (``registry.http.check_request`` refuses the others, or, on a
  ``lenient`` route (FHIR's default), ignores them unless the request says ``Prefer: handling=strict``)
  and the media types of the bodies it takes;
- for a route that reads or writes patient-linked data, the ``Interaction`` its audit row records
  (``registry.audit``: no answer leaves such a route before its row is committed).

The guard, the request checks and the audit read the same declaration, so a route cannot be
audited under one description and authorised under another. The module also names the keys of
what the request's state carries between them (``scope["state"]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litestar.handlers.base import BaseRouteHandler

    from schemas.audit import Interaction

__all__ = (
    "IGNORED_KEY",
    "JSON_TYPES",
    "OUTCOME_KEY",
    "PRINCIPAL_KEY",
    "REQUESTER_KEY",
    "ROUTE_KEY",
    "RouteSpec",
    "route_spec",
)

JSON_TYPES = frozenset({"application/json", "application/fhir+json"})
"""The body media types a route takes unless it says otherwise."""

ROUTE_KEY = "route"
"""Key of a handler's ``RouteSpec`` in its ``opt``."""

PRINCIPAL_KEY = "principal"
"""Key of the authenticated ``Principal`` in ``scope["state"]`` (set by the authentication guard)."""

IGNORED_KEY = "ignored_parameters"
"""Key in ``scope["state"]`` of the query parameter names a lenient route ignored (sorted, possibly empty)."""

REQUESTER_KEY = "requester"
"""Key of the request's ``Requester`` in ``scope["state"]`` (who asks, why, for whom; set by the guard)."""

OUTCOME_KEY = "outcome"
"""Key in ``scope["state"]`` of what an error response said (its audit row records it)."""


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """What one route takes and needs.

    Attributes:
        scopes: every scope the caller's token must grant (none and not public: ``admin``).
        public: no token at all (it reveals nothing about patients).
        query: the query parameter names it takes; any other is refused (400).
        media_types: the body media types it takes; any other is refused (415).
        audit: the interaction its audit row records; None for a route that is not patient-linked.
        lenient: unknown query parameters are ignored (and reported) rather than refused, unless the
            request asks ``Prefer: handling=strict`` (FHIR's rule); otherwise they are refused.
    """

    scopes: tuple[str, ...] = ()
    public: bool = False
    query: frozenset[str] = frozenset()
    media_types: frozenset[str] = JSON_TYPES
    audit: Interaction | None = None
    lenient: bool = False

    def __post_init__(self) -> None:
        """Refuse a public route that names scopes or is audited (a public route reveals no patient data).

        Raises:
            ValueError: the declaration contradicts itself.
        """
        if self.public and (self.scopes or self.audit is not None):
            raise ValueError("a public route needs no scopes and reveals no patient data")

    @property
    def opt(self) -> dict[str, Any]:
        """The handler ``opt`` that carries this declaration."""
        return {ROUTE_KEY: self}


_UNDECLARED = RouteSpec()
"""What a route that declares nothing gets: no query parameters, and (by the guard) ``admin`` only."""


def route_spec(handler: BaseRouteHandler) -> RouteSpec:
    """The declaration of a route handler (an undeclared route takes no query and needs ``admin``)."""
    spec = handler.opt.get(ROUTE_KEY)
    return spec if isinstance(spec, RouteSpec) else _UNDECLARED
