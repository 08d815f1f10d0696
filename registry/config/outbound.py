"""The settings of what this server asks of other servers: the broker's searches at gateways,
federation's look-ups at peer registries, and where any of its outbound calls may go."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import msgspec
from msgspec import Meta

__all__ = ("BrokerSettings", "FederationSettings", "OutboundSettings", "check_networks")


class BrokerSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Discovery fan-out: ImagingStudy and DocumentReference searches asked of the patient's gateways."""

    gateway_timeout: Annotated[
        float, Meta(gt=0, description="Seconds one gateway may take to answer a search (getting a token included).")
    ] = 10.0
    deadline: Annotated[
        float,
        Meta(gt=0, description="Seconds a whole search may take, locating included; `Prefer: wait=N` shortens it."),
    ] = 15.0
    request_concurrency: Annotated[
        int, Meta(ge=1, le=1000, description="Gateways one search asks at once (the rest wait for a slot).")
    ] = 16
    gateway_concurrency: Annotated[
        int,
        Meta(ge=1, le=1000, description="Searches in flight to one gateway at once (its connections), per process."),
    ] = 32
    max_response_bytes: Annotated[
        int, Meta(ge=1024, description="Largest answer read from one gateway; larger ones are abandoned (too-large).")
    ] = 8_388_608
    breaker_failures: Annotated[
        int, Meta(ge=1, description="Consecutive failures that open a gateway's circuit (it is then skipped).")
    ] = 5
    breaker_cooldown: Annotated[
        float,
        Meta(gt=0, description="Seconds an open circuit skips its gateway before one probe search is let through."),
    ] = 30.0
    anonymous_gateways: Annotated[
        bool,
        Meta(
            description="Ask gateways this instance has no credentials for (federated ones, or members without "
            "`--client-id`/`--bearer-token-file`) without a token, instead of skipping them."
        ),
    ] = False
    page_seconds: Annotated[
        float, Meta(gt=0, description="Seconds a merged result of several pages is kept for its paging links.")
    ] = 300.0
    page_cache_size: Annotated[
        int, Meta(ge=1, description="Merged results kept for paging, per server process (the oldest go first).")
    ] = 256


class FederationSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Federation: the limits of one look-up that follows `registry` records to peer registries (DESIGN §5)."""

    hop_limit: Annotated[
        int, Meta(ge=1, le=8, description="Most registry hops one look-up follows from this registry (at most 8).")
    ] = 4
    budget: Annotated[
        int, Meta(ge=1, le=1000, description="Most requests to peer registries one look-up may send.")
    ] = 32
    deadline: Annotated[
        float,
        Meta(gt=0, le=60, description="Seconds one look-up may take in all; each peer is given what is left."),
    ] = 5.0
    min_hop_time: Annotated[
        float,
        Meta(
            ge=0, le=5, description="Seconds that must be left of the deadline to ask one more peer (else `deadline`)."
        ),
    ] = 0.05
    concurrency: Annotated[int, Meta(ge=1, le=64, description="Peer registries one look-up asks at the same time.")] = 8
    max_response_bytes: Annotated[
        int, Meta(ge=1024, description="Largest answer accepted from a peer registry (`too-large` above).")
    ] = 1_048_576
    negative_cache_seconds: Annotated[
        float,
        Meta(
            ge=0,
            description="Seconds a peer that failed is not asked again (`failed-recently`), per process; 0: off.",
        ),
    ] = 30.0
    max_connections: Annotated[
        int, Meta(ge=1, description="Connections to peer registries each server process keeps at most.")
    ] = 100


class OutboundSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where this server may call: member gateways and registries, JWKS URLs, token endpoints (not webhooks)."""

    allowed_hosts: Annotated[
        str,
        Meta(
            description="Host names (comma-separated) of member services, key and token URLs this server may call "
            "whatever they resolve to (loopback, private, link-local)."
        ),
    ] = ""
    allowed_networks: Annotated[
        str,
        Meta(
            description="Address ranges (CIDR, comma-separated) member services, key and token URLs may resolve "
            "to although private or local (a hospital network's gateways)."
        ),
    ] = ""

    def __post_init__(self) -> None:
        """Refuse an allowed network that is not an address or a CIDR range."""
        check_networks(self.allowed_networks, "outbound.allowed_networks")


def check_networks(text: str, name: str) -> None:
    """Refuse a comma-separated list of addresses or CIDR ranges (setting ``name``) holding anything else.

    Raises:
        ValueError: an entry is neither.
    """
    for part in text.split(","):
        if part.strip():
            try:
                ipaddress.ip_network(part.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{name}: {part.strip()!r} is not an address or a CIDR range") from None
