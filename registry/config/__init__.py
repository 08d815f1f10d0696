"""Settings: one msgspec tree (``settings.py``, ``server.py``, ``outbound.py``), read from ``IEF_*`` environment
variables and an optional TOML file (``loading.py``)."""

from registry.config.loading import TOML_ONLY, SettingDoc, SettingsError, describe_settings, load_settings
from registry.config.outbound import BrokerSettings, FederationSettings, OutboundSettings
from registry.config.server import DatabaseSettings, EmbeddedSettings, HttpSettings
from registry.config.settings import (
    AuditSettings,
    AuthSettings,
    FhirSettings,
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
    "OutboundSettings",
    "PrivacySettings",
    "RecordSettings",
    "SettingDoc",
    "Settings",
    "SettingsError",
    "SubscriptionSettings",
    "TrustedIssuer",
    "describe_settings",
    "load_settings",
)
