"""Who may receive what a subscription sends (pure): checked at create and again before each delivery.

- every subscription: ``system/Subscription.r`` (notifications are reads of the subscription);
- ``id-only`` and ``full-resource``: also ``system/Basic.rs`` (they name or carry registry records);
- ``full-resource``: also the client's full-resource permission (``clients add --full-resource``);
- no ``patient`` filter: ``admin`` (it reveals registrations of every patient).

At create the caller's token scopes are checked; at delivery the owner's registered scopes, its
enabled state and its full-resource permission, as they are then.
"""

from __future__ import annotations

from registry.auth.scopes import ADMIN, satisfies

__all__ = ("RECEIVE", "refusal")

RECEIVE = "system/Subscription.r"
_RECORDS = "system/Basic.rs"


def refusal(scopes: frozenset[str], *, content: str, has_patient: bool, full_resource_allowed: bool) -> str | None:
    """Why a client holding ``scopes`` may not receive this subscription's notifications, or None."""
    if not has_patient and not satisfies(scopes, ADMIN):
        return "a subscription without a patient filter needs the admin scope"
    if not satisfies(scopes, RECEIVE):
        return f"receiving notifications needs the scope {RECEIVE}"
    if content != "empty" and not satisfies(scopes, _RECORDS):
        return f"{content} notifications name registry records and need the scope {_RECORDS}"
    if content == "full-resource" and not full_resource_allowed:
        return "full-resource notifications are only for clients allowed them (clients add --full-resource)"
    return None
