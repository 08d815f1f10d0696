"""The settings tree (msgspec): its sections and the root ``Settings``.

Nothing is read at import time: ``loading.load_settings()`` builds a ``Settings`` once (the CLI
does it); tests build ``Settings(...)`` directly. The sections of the server process itself (where it
listens and how it bounds requests, its database) are in ``server.py``; those of the calls this
server makes to other servers (the broker's, federation's, where it may call) in ``outbound.py``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from registry.config.outbound import BrokerSettings, FederationSettings, OutboundSettings, check_networks
from registry.config.server import DatabaseSettings, EmbeddedSettings, HttpSettings

__all__ = (
    "AuditSettings",
    "AuthSettings",
    "FhirSettings",
    "LogSettings",
    "PrivacySettings",
    "RecordSettings",
    "Settings",
    "SubscriptionSettings",
    "TrustedIssuer",
)


class RecordSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Registry record limits."""

    batch_max_items: Annotated[
        int, Meta(ge=1, le=100_000, description="Most items one batch request may carry (413 above).")
    ] = 10_000
    batch_chunk_size: Annotated[
        int,
        Meta(
            ge=1,
            le=10_000,
            description="Ignored: a batch is staged with COPY and applied by one statement (migration 0012); "
            "kept so that configurations that set it still load.",
        ),
    ] = 1_000
    lifecycle_chunk_size: Annotated[
        int,
        Meta(
            ge=1,
            le=100_000,
            description="Records one transaction of a lifecycle command (services retire, services move, records "
            "stale --archive, federation publish) handles: a killed command resumes after the last such chunk.",
        ),
    ] = 5_000


class LogSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Structured logging."""

    level: Annotated[str, Meta(description="Lowest level logged: debug, info, warning, error.")] = "info"
    format: Annotated[
        str, Meta(description="`json`, `console`, or `auto` (console on a terminal, JSON otherwise).")
    ] = "auto"
    access: Annotated[bool, Meta(description="One canonical log line per HTTP request.")] = True
    hash_key: Annotated[
        str | None,
        Meta(description="Key for the keyed hash that stands for IHIs in logs; unset keeps one in the data dir."),
    ] = None


class FhirSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """FHIR facade."""

    canonical_base: Annotated[
        str, Meta(description="Canonical base of the IEF profiles, extensions and code systems.")
    ] = "https://ief-registry.org/fhir"
    default_count: Annotated[int, Meta(ge=1, description="Search page size when `_count` is not given.")] = 50
    max_count: Annotated[int, Meta(ge=1, description="Largest `_count` honoured.")] = 1000


class TrustedIssuer(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An outside authority whose access tokens this server accepts (one ``[[auth.trusted_issuers]]`` table)."""

    issuer: Annotated[str, Meta(min_length=1, description="The `iss` its tokens carry, exactly.")]
    audience: Annotated[str, Meta(min_length=1, description="The `aud` its tokens must carry for this server.")]
    jwks_url: Annotated[
        str | None, Meta(description="URL of its JWKS (fetched with a timeout and cached); or give `jwks_file`.")
    ] = None
    jwks_file: Annotated[str | None, Meta(description="File holding its JWKS; or give `jwks_url`.")] = None
    client_id_claim: Annotated[str, Meta(description="The claim that carries its client ID.")] = "client_id"
    clients: Annotated[
        dict[str, str],
        Meta(description="Its client IDs mapped to local client IDs (which give the service binding and cap scopes)."),
    ] = msgspec.field(default_factory=dict)
    algorithms: Annotated[list[str], Meta(description="Signature algorithms accepted from it (asymmetric only).")] = (
        msgspec.field(default_factory=lambda: ["RS256", "RS384", "ES256", "ES384", "PS256"])
    )

    def __post_init__(self) -> None:
        """Refuse a table that names no key source or both, or a symmetric or empty algorithm list."""
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError(f"trusted issuer {self.issuer!r}: give exactly one of jwks_url and jwks_file")
        if not self.algorithms or any(alg.upper().startswith("HS") or alg == "none" for alg in self.algorithms):
            raise ValueError(f"trusted issuer {self.issuer!r}: algorithms must be asymmetric (RS*, PS*, ES*)")


class AuthSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Tokens: the built-in issuer, trusted issuers, client checks and rate limits."""

    issuer: Annotated[
        str | None,
        Meta(
            description="`iss` of the built-in issuer's tokens; unset: the public base URL, "
            "else `urn:ief-registry:<service ID>`."
        ),
    ] = None
    audience: Annotated[str | None, Meta(description="`aud` of the built-in issuer's tokens; unset: the issuer.")] = (
        None
    )
    token_lifetime: Annotated[
        int, Meta(ge=10, le=86_400, description="Seconds an access token from `/auth/token` is valid.")
    ] = 300
    max_token_lifetime: Annotated[
        int,
        Meta(
            ge=10,
            le=604_800,
            description="Longest lifetime of any token the built-in issuer signs (`token --lifetime`, "
            "the dev token); retired keys stay published this long.",
        ),
    ] = 43_200
    leeway: Annotated[
        int, Meta(ge=0, le=300, description="Seconds of clock skew allowed on `exp`, `nbf` and `iat`.")
    ] = 30
    allow_client_secrets: Annotated[
        bool,
        Meta(
            description="Accept client secrets at `/auth/token` (`client_secret_basic`/`_post`); dev mode turns it on."
        ),
    ] = False
    client_cache_seconds: Annotated[
        float,
        Meta(
            ge=0,
            description="Seconds a client's enabled state and rate are cached per process "
            "(0: checked on every request).",
        ),
    ] = 10.0
    key_refresh_seconds: Annotated[
        float,
        Meta(ge=0, description="Seconds the signing keys read from the database are used before they are read again."),
    ] = 60.0
    token_cache_size: Annotated[
        int, Meta(ge=16, description="Verified tokens remembered per process (each verified once while valid).")
    ] = 10_000
    rate_per_second: Annotated[
        float, Meta(gt=0, description="Requests per second each client may make, per server process (token bucket).")
    ] = 200.0
    rate_burst: Annotated[
        int, Meta(ge=1, description="Requests a client may make at once before the rate applies.")
    ] = 400
    failure_rate_per_second: Annotated[
        float, Meta(gt=0, description="Failed authentications per second allowed from one address before 429s.")
    ] = 2.0
    failure_burst: Annotated[
        int, Meta(ge=1, description="Failed authentications from one address at once before the rate applies.")
    ] = 20
    http_timeout: Annotated[
        float,
        Meta(gt=0, description="Seconds for each outbound auth call: JWKS fetches, discovery and token requests."),
    ] = 5.0
    jwks_cache_seconds: Annotated[
        float, Meta(ge=0, description="Seconds a fetched JWKS is used before it is fetched again.")
    ] = 300.0
    jwks_max_bytes: Annotated[
        int, Meta(ge=1024, description="Largest JWKS or token response accepted from another server.")
    ] = 65_536
    trusted_issuers: Annotated[
        list[TrustedIssuer],
        Meta(description="Outside authorities whose tokens are accepted (TOML `[[auth.trusted_issuers]]` tables)."),
    ] = msgspec.field(default_factory=list)


class AuditSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The audit trail: group commit of read events and the hash-chain sealer."""

    flush_interval_ms: Annotated[
        float,
        Meta(
            ge=0,
            le=1000,
            description="Extra wait (ms) to gather audit rows before each insert; 0: rows gather while one runs.",
        ),
    ] = 0.0
    flush_max_rows: Annotated[
        int, Meta(ge=1, le=10_000, description="Most audit rows written by one group-commit insert.")
    ] = 500
    flush_concurrency: Annotated[
        int,
        Meta(
            ge=1,
            le=16,
            description="Audit group-commit inserts in flight at once per server process (one connection each).",
        ),
    ] = 4
    seal_interval_ms: Annotated[
        int,
        Meta(ge=10, le=60_000, description="How often (ms) a server process appends new audit rows to the hash chain."),
    ] = 250
    close_grace_seconds: Annotated[
        float,
        Meta(
            ge=0,
            le=86_400,
            description="Seconds after a month ends before it is closed (rows for it refused), chained to the end "
            "and its checkpoint signed; covers rows timed just before midnight and inserted just after.",
        ),
    ] = 300.0
    retention_months: Annotated[
        int,
        Meta(
            ge=0,
            le=1200,
            description="Months of audit kept in the database: `ief-registry audit prune` without `--before` drops "
            "older months, and only those exported and verified; 0 keeps everything.",
        ),
    ] = 0


class SubscriptionSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """FHIR subscriptions: the delivery worker, retries, limits and endpoint safety."""

    worker: Annotated[
        bool, Meta(description="Run the delivery worker inside `serve` (`ief-registry worker` runs more).")
    ] = True
    worker_concurrency: Annotated[
        int, Meta(ge=1, le=1000, description="Notifications one worker process sends at once (one per subscription).")
    ] = 16
    poll_interval: Annotated[
        float,
        Meta(
            gt=0,
            le=60,
            description="Seconds between looks for due work when no database notification wakes the worker.",
        ),
    ] = 1.0
    lease_margin: Annotated[
        float,
        Meta(
            ge=0,
            description="Seconds beyond a notification's timeout that a worker holds it; a killed worker's "
            "notification is taken up again after that.",
        ),
    ] = 30.0
    retry_schedule: Annotated[
        str,
        Meta(
            description="Waits before each retry of a failed notification (`5s`, `5m`, `2h`, comma-separated); "
            "after the last one the subscription goes to `error`."
        ),
    ] = "5s,5m,30m,2h,5h,10h,14h,20h,24h"
    retry_jitter: Annotated[
        float, Meta(ge=0, le=1, description="Each retry wait is varied at random by up to this fraction.")
    ] = 0.2
    retry_after_max: Annotated[
        float, Meta(ge=0, description="Longest `Retry-After` honoured (seconds); longer ones are cut to it.")
    ] = 86_400.0
    handshake_attempts: Annotated[
        int, Meta(ge=1, le=20, description="Attempts of a handshake (on the retry schedule) before `error`.")
    ] = 3
    timeout_default: Annotated[
        int, Meta(ge=1, description="Seconds one notification attempt may take when the subscription sets no timeout.")
    ] = 10
    timeout_max: Annotated[
        int, Meta(ge=1, description="Largest timeout a subscription may ask for (larger ones are clamped).")
    ] = 30
    heartbeat_min: Annotated[
        int, Meta(ge=1, description="Shortest heartbeat period (seconds); shorter ones are clamped up.")
    ] = 60
    heartbeat_max: Annotated[
        int, Meta(ge=1, description="Longest heartbeat period (seconds); longer ones are clamped down.")
    ] = 86_400
    max_count_max: Annotated[
        int, Meta(ge=1, description="Most events one notification may carry (larger maxCount values are clamped).")
    ] = 100
    group_max_members: Annotated[
        int, Meta(ge=1, le=1_000_000, description="Most patients one cohort Group (a patient-group filter) holds.")
    ] = 100_000
    max_per_client: Annotated[
        int, Meta(ge=1, description="Most live subscriptions one client may hold (admin clients are not limited).")
    ] = 100
    event_retention_seconds: Annotated[
        int,
        Meta(ge=0, description="Seconds a delivered, exhausted or cancelled event is kept for `$events`."),
    ] = 2_592_000
    events_page_max: Annotated[int, Meta(ge=1, description="Most events one `$events` answer carries.")] = 100
    secret_rotation_seconds: Annotated[
        int,
        Meta(ge=0, description="Seconds a replaced signing secret keeps signing beside the new one (rotation)."),
    ] = 86_400
    allowed_hosts: Annotated[
        str,
        Meta(
            description="Endpoint host names (comma-separated) allowed whatever they resolve to "
            "(loopback, private, link-local)."
        ),
    ] = ""
    allowed_networks: Annotated[
        str,
        Meta(description="Address ranges (CIDR, comma-separated) endpoints may resolve to although private or local."),
    ] = ""
    metrics_max_subscriptions: Annotated[
        int,
        Meta(
            ge=0,
            description="Subscriptions with their own series on `/metrics` (those with the most pending events "
            "and failures); the rest are summed.",
        ),
    ] = 100


class PrivacySettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The privacy decision point (DESIGN §12)."""

    require_purpose: Annotated[
        bool,
        Meta(
            description="Refuse (400) a read of patient-linked data that states no purpose of use "
            "(IEF-Purpose-Of-Use header or purpose_of_use claim)."
        ),
    ] = False


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every setting of ief-registry."""

    data_dir: Annotated[
        str, Meta(description="Folder for the embedded cluster, keys and the generated service ID.")
    ] = ".ief-registry"
    dev: Annotated[bool, Meta(description="Development mode (`serve --dev`); never for production.")] = False
    service_id: Annotated[
        str | None, Meta(description="This instance's service ID; unset generates one kept in the data dir.")
    ] = None
    public_base_url: Annotated[
        str | None,
        Meta(
            description="External base URL (scheme, host, port, path); unset: `http://<http.host>:<http.port>` "
            "(dev mode: from the request)."
        ),
    ] = None
    trusted_proxies: Annotated[
        str,
        Meta(
            description="Addresses or CIDR ranges (comma-separated) of reverse proxies whose X-Forwarded-For and "
            "X-Forwarded-Proto are believed; unset: none."
        ),
    ] = ""
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    embedded: EmbeddedSettings = msgspec.field(default_factory=EmbeddedSettings)
    records: RecordSettings = msgspec.field(default_factory=RecordSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    fhir: FhirSettings = msgspec.field(default_factory=FhirSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    audit: AuditSettings = msgspec.field(default_factory=AuditSettings)
    subscriptions: SubscriptionSettings = msgspec.field(default_factory=SubscriptionSettings)
    broker: BrokerSettings = msgspec.field(default_factory=BrokerSettings)
    federation: FederationSettings = msgspec.field(default_factory=FederationSettings)
    outbound: OutboundSettings = msgspec.field(default_factory=OutboundSettings)
    privacy: PrivacySettings = msgspec.field(default_factory=PrivacySettings)

    def __post_init__(self) -> None:
        """Refuse a trusted proxy that is not an address or a CIDR range."""
        check_networks(self.trusted_proxies, "trusted_proxies")
