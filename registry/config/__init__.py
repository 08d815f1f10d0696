"""Settings: one msgspec tree (``settings.py``, ``outbound.py``), read from ``IEF_*`` environment variables and an
optional TOML file (``loading.py``)."""

from registry.config.loading import TOML_ONLY, SettingDoc, describe_settings, load_settings
from registry.config.outbound import BrokerSettings, FederationSettings
from registry.config.settings import (
    AuditSettings,
    AuthSettings,
    DatabaseSettings,
    EmbeddedSettings,
    FhirSettings,
    HttpSettings,
    LogSettings,
    PrivacySettings,
    RecordSettings,
    Settings,
    SubscriptionSettings,
    TrustedIssuer,
)

__all__ = (
    "TOML_ONLY",
    "AuditSettings",
    "AuthSettings",
    "BrokerSettings",
    "DatabaseSettings",
    "EmbeddedSettings",
    "FederationSettings",
    "FhirSettings",
    "HttpSettings",
    "LogSettings",
    "PrivacySettings",
    "RecordSettings",
    "SettingDoc",
    "Settings",
    "SubscriptionSettings",
    "TrustedIssuer",
    "describe_settings",
    "load_settings",
)
