"""The pure policy of a federated look-up (``federation.hops``): loops, hop limit, budget, deadline."""

from __future__ import annotations

import pytest

from federation.hops import MAX_HOP_LIMIT, HopLimits, Lookup
from registry.config import FederationSettings, load_settings
from schemas.types import UnresolvedReason

ORIGIN = "origin"


def lookup(hop_limit: int = 4, budget: int = 32, deadline: float = 5.0, min_hop_time: float = 0.05) -> Lookup:
    """A look-up started at time 100."""
    return Lookup(ORIGIN, HopLimits(hop_limit, budget, deadline, min_hop_time), started=100.0)


def reasons(look: Lookup) -> dict[str, tuple[UnresolvedReason, list[str]]]:
    """The look-up's unresolved registries: service ID -> (reason, via)."""
    return {u.service_id: (u.reason, u.via) for u in look.unresolved()}


def test_the_origins_own_referrals_are_hop_one() -> None:
    """A registry the origin's own record names is reached at hop 1, with a chain of itself alone."""
    look = lookup()
    assert look.refer(None, "b") is True
    assert (look.hop("b"), look.chain("b"), look.chain(None)) == (1, ("b",), ())


def test_chains_follow_the_referrals() -> None:
    """Each referral extends the referrer's chain by one."""
    look = lookup()
    look.refer(None, "b")
    look.refer("b", "c")
    look.refer("c", "d")
    assert look.chain("d") == ("b", "c", "d")
    assert look.hop("d") == 3


def test_a_referral_back_to_the_origin_is_a_loop() -> None:
    """B referring back to the origin (A→B→A) is reported as a loop, via B, and not followed."""
    look = lookup()
    look.refer(None, "b")
    assert look.refer("b", ORIGIN) is False
    assert reasons(look) == {ORIGIN: (UnresolvedReason.LOOP, ["b"])}


def test_a_longer_loop_back_to_the_origin() -> None:
    """A→B→C→A: the loop is reported with the whole chain that closed it."""
    look = lookup()
    look.refer(None, "b")
    look.refer("b", "c")
    assert look.refer("c", ORIGIN) is False
    assert reasons(look) == {ORIGIN: (UnresolvedReason.LOOP, ["b", "c"])}


def test_a_loop_among_peers() -> None:
    """A→B→C→B: a referral to a registry on the referrer's own chain is a loop."""
    look = lookup()
    look.refer(None, "b")
    look.refer("b", "c")
    assert look.refer("c", "b") is False
    assert reasons(look) == {"b": (UnresolvedReason.LOOP, ["b", "c"])}


def test_a_registry_referring_to_itself_is_a_loop() -> None:
    """A registry whose own record names itself is a loop of one."""
    look = lookup()
    look.refer(None, "b")
    assert look.refer("b", "b") is False
    assert reasons(look)["b"][0] is UnresolvedReason.LOOP


def test_the_origins_own_record_naming_itself_is_a_loop() -> None:
    """A record of the origin that names the origin is a loop with an empty chain."""
    look = lookup()
    assert look.refer(None, ORIGIN) is False
    assert reasons(look) == {ORIGIN: (UnresolvedReason.LOOP, [])}


def test_a_diamond_is_asked_once_and_not_reported() -> None:
    """A→B→D and A→C→D: D is asked once; the second referral is neither asked nor reported."""
    look = lookup()
    look.refer(None, "b")
    look.refer(None, "c")
    assert look.refer("b", "d") is True
    assert look.refer("c", "d") is False
    assert look.unresolved() == []


def test_a_shorter_chain_found_later_replaces_the_longer() -> None:
    """D reached first at hop 3 (A→B→C→D), then at hop 2 (A→E→D): its chain becomes the shorter one."""
    look = lookup()
    look.refer(None, "b")
    look.refer("b", "c")
    look.refer("c", "d")
    look.refer(None, "e")
    assert look.refer("e", "d") is False
    assert look.chain("d") == ("e", "d")


def test_a_longer_chain_found_later_changes_nothing() -> None:
    """D reached at hop 2, then at hop 3: its chain stays the shorter one."""
    look = lookup()
    look.refer(None, "e")
    look.refer("e", "d")
    look.refer(None, "b")
    look.refer("b", "c")
    look.refer("c", "d")
    assert look.chain("d") == ("e", "d")


def test_the_hop_limit_is_inclusive() -> None:
    """With a hop limit of 2, hop 2 is asked and hop 3 is reported as hop-limit with the chain that reached it."""
    look = lookup(hop_limit=2)
    assert look.refer(None, "b") is True
    assert look.refer("b", "c") is True
    assert look.refer("c", "d") is False
    assert reasons(look) == {"d": (UnresolvedReason.HOP_LIMIT, ["b", "c"])}
    assert "hop limit of 2" in look.unresolved()[0].detail


def test_a_hop_limit_of_one_asks_only_direct_referrals() -> None:
    """With a hop limit of 1, the origin's referrals are asked and theirs are reported."""
    look = lookup(hop_limit=1)
    assert look.refer(None, "b") is True
    assert look.refer("b", "c") is False
    assert reasons(look) == {"c": (UnresolvedReason.HOP_LIMIT, ["b"])}


def test_a_registry_beyond_the_limit_reached_later_within_it_is_asked() -> None:
    """D referred to beyond the limit, then by a shorter chain within it: asked after all, and not reported."""
    look = lookup(hop_limit=2)
    look.refer(None, "b")
    look.refer("b", "c")
    assert look.refer("c", "d") is False
    look.refer(None, "e")
    assert look.refer("e", "d") is True
    assert look.unresolved() == []
    assert look.chain("d") == ("e", "d")


def test_a_registry_beyond_the_limit_is_reported_once() -> None:
    """Two referrals beyond the limit to the same registry give one report, with the first chain."""
    look = lookup(hop_limit=1)
    look.refer(None, "b")
    look.refer(None, "c")
    look.refer("b", "d")
    look.refer("c", "d")
    assert reasons(look) == {"d": (UnresolvedReason.HOP_LIMIT, ["b"])}


def test_dispatch_spends_the_budget_exactly() -> None:
    """A budget of 2: two requests are sent, the third is reported as budget and not counted."""
    look = lookup(budget=2)
    for target in ("b", "c", "d"):
        look.refer(None, target)
    assert look.dispatch("b", 100.0) is not None
    assert look.dispatch("c", 100.0) is not None
    assert look.dispatch("d", 100.0) is None
    assert look.sent == 2
    assert reasons(look) == {"d": (UnresolvedReason.BUDGET, [])}
    assert "budget of 2" in look.unresolved()[0].detail


def test_each_peer_is_given_what_is_left_of_the_deadline() -> None:
    """Started at 100 with a 5 s deadline: asked at 101 a peer gets 4 s, at 104.5 it gets 0.5 s."""
    look = lookup()
    look.refer(None, "b")
    look.refer(None, "c")
    assert look.dispatch("b", 101.0) == pytest.approx(4.0)
    assert look.dispatch("c", 104.5) == pytest.approx(0.5)
    assert look.remaining(106.0) == 0.0


def test_a_callers_sooner_deadline_wins() -> None:
    """A caller's own deadline before the look-up's ends it sooner; one after it changes nothing."""
    limits = HopLimits(deadline=5.0)
    assert Lookup(ORIGIN, limits, started=100.0, until=102.0).deadline_at == 102.0
    assert Lookup(ORIGIN, limits, started=100.0, until=110.0).deadline_at == 105.0


def test_no_peer_is_asked_with_less_than_the_minimum_left() -> None:
    """With 0.1 s minimum: 0.25 s left still asks; 0.05 s left or the deadline passed is reported as deadline."""
    look = lookup(min_hop_time=0.1)
    for target in ("b", "c", "d"):
        look.refer(None, target)
    assert look.dispatch("b", 104.75) == pytest.approx(0.25)
    assert look.dispatch("c", 104.95) is None
    assert look.dispatch("d", 107.0) is None
    assert {sid: reason for sid, (reason, _) in reasons(look).items()} == {
        "c": UnresolvedReason.DEADLINE,
        "d": UnresolvedReason.DEADLINE,
    }
    assert look.sent == 1


def test_a_passed_deadline_does_not_spend_the_budget() -> None:
    """Registries not asked for lack of time leave the budget untouched."""
    look = lookup(budget=1)
    look.refer(None, "b")
    look.refer(None, "c")
    assert look.dispatch("b", 200.0) is None
    assert look.dispatch("c", 101.0) is not None
    assert look.sent == 1


def test_the_first_report_of_a_registry_wins() -> None:
    """A registry reported twice keeps its first reason."""
    look = lookup()
    look.refer(None, "b")
    look.report("b", UnresolvedReason.TIMEOUT, "no answer")
    look.report("b", UnresolvedReason.ERROR_RESPONSE, "500")
    assert reasons(look) == {"b": (UnresolvedReason.TIMEOUT, [])}


def test_reports_of_reached_registries_carry_the_chain_that_referred_to_them() -> None:
    """A peer that failed at hop 2 is reported via the registry that referred to it."""
    look = lookup()
    look.refer(None, "b")
    look.refer("b", "c")
    look.report("c", UnresolvedReason.UNREACHABLE, "no connection")
    assert reasons(look) == {"c": (UnresolvedReason.UNREACHABLE, ["b"])}


def test_unresolved_is_ordered_by_chain_length_then_service_id() -> None:
    """Shallow registries come first; equal depths in service ID order."""
    look = lookup(hop_limit=1)
    look.refer(None, "z")
    look.refer(None, "y")
    look.refer("z", "x")
    look.report("z", UnresolvedReason.TIMEOUT, "slow")
    look.report("y", UnresolvedReason.TIMEOUT, "slow")
    assert [u.service_id for u in look.unresolved()] == ["y", "z", "x"]


@pytest.mark.parametrize(
    "limits",
    [
        {"hop_limit": 0},
        {"hop_limit": MAX_HOP_LIMIT + 1},
        {"budget": 0},
        {"deadline": 0.0},
        {"min_hop_time": -1.0},
    ],
)
def test_impossible_limits_are_refused(limits: dict[str, float]) -> None:
    """A hop limit outside 1..8, no budget, no deadline or a negative minimum hop time is refused."""
    with pytest.raises(ValueError, match=r"limit|budget"):
        HopLimits(**limits)  # type: ignore[arg-type]


def test_limits_come_from_the_settings_with_design_defaults() -> None:
    """The default settings give DESIGN §5's limits: 4 hops, 32 requests, 5 seconds."""
    assert HopLimits.of(FederationSettings()) == HopLimits(hop_limit=4, budget=32, deadline=5.0, min_hop_time=0.05)
    assert HopLimits.of(FederationSettings(hop_limit=8, budget=5, deadline=1.5)).hop_limit == MAX_HOP_LIMIT


def test_the_settings_refuse_a_hop_limit_over_eight() -> None:
    """IEF_FEDERATION_HOP_LIMIT above 8 is an invalid setting."""
    with pytest.raises(ValueError, match="hop_limit"):
        load_settings({"IEF_FEDERATION_HOP_LIMIT": "9"})
