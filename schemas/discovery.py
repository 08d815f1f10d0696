"""Discovery fan-out vocabulary (DESIGN section 6): what can go wrong with one gateway of a search.

Each problem becomes one issue of the ``OperationOutcome`` entry of the broker's searchset Bundle,
coded with ``GatewayProblem`` (published as the ``broker-outcome`` code system) and naming the
service it concerns.
"""

from __future__ import annotations

import enum

__all__ = ("GatewayProblem",)


class GatewayProblem(enum.StrEnum):
    """Why a gateway contributed nothing (or not everything) to a broker search."""

    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    ERROR_RESPONSE = "error-response"
    INVALID_RESPONSE = "invalid-response"
    TOO_LARGE = "too-large"
    UNAUTHORIZED = "unauthorized"
    CIRCUIT_OPEN = "circuit-open"
    SKIPPED = "skipped"
    UNRESOLVED = "unresolved"
    INCOMPLETE = "incomplete"
