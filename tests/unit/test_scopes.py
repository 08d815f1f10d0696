"""SMART scope grammar: v2 letters, v1 words, wildcards, admin, and what grants nothing."""

from __future__ import annotations

import pytest

from registry.auth.scopes import Principal, granted_permissions, satisfies


@pytest.mark.parametrize(
    ("granted", "required", "allowed"),
    [
        ({"system/Basic.cu"}, "system/Basic.cu", True),
        ({"system/Basic.cu"}, "system/Basic.rs", False),
        ({"system/Basic.cruds"}, "system/Basic.rs", True),
        ({"system/Basic.read"}, "system/Basic.rs", True),
        ({"system/Basic.write"}, "system/Basic.cu", True),
        ({"system/Basic.write"}, "system/Basic.r", False),
        ({"system/Basic.*"}, "system/Basic.cruds", True),
        ({"system/*.rs"}, "system/Endpoint.rs", True),
        ({"system/*.read"}, "system/ImagingStudy.rs", True),
        ({"system/Basic.r", "system/Basic.s"}, "system/Basic.rs", True),
        ({"system/Basic.rs"}, "system/Endpoint.rs", False),
        ({"admin"}, "system/AuditEvent.rs", True),
        ({"admin"}, "admin", True),
        ({"system/*.cruds"}, "admin", False),
    ],
)
def test_requirements(granted: set[str], required: str, allowed: bool) -> None:
    """A requirement is met by the letters granted on its resource or on *, or by admin."""
    assert satisfies(frozenset(granted), required) is allowed


@pytest.mark.parametrize(
    "scope",
    ["patient/Basic.rs", "user/*.read", "system/Basic.sr", "system/Basic.rs?category=x", "openid", "system/basic.rs"],
)
def test_foreign_and_malformed_scopes_grant_nothing(scope: str) -> None:
    """patient/ and user/ scopes, letters out of order, query-restricted v2 scopes and junk grant nothing."""
    assert granted_permissions({scope}) == {}
    assert not satisfies(frozenset({scope}), "system/Basic.r")


def test_a_malformed_requirement_is_a_programming_error() -> None:
    """Declaring a route with a scope that is not a requirement fails loudly."""
    with pytest.raises(ValueError, match="not a scope requirement"):
        satisfies(frozenset(), "system/Basic.xyz")


def test_principal_service_binding() -> None:
    """A client writes only its own service's records unless it holds admin."""
    gateway = Principal("c1", "svc-a", frozenset({"system/Basic.cu"}), "iss", 0)
    operator = Principal("op", "svc-z", frozenset({"admin"}), "iss", 0)
    assert gateway.may_act_for("svc-a")
    assert not gateway.may_act_for("svc-b")
    assert operator.may_act_for("svc-b")
    assert gateway.allows("system/Basic.cu")
    assert not gateway.allows("system/Basic.rs")
