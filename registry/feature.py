"""How a feature contributes itself to the server: ``FeaturePlugin``, a Litestar ``InitPlugin``.

A feature (the registry's FHIR resources, federation, the broker's discovery, subscriptions…)
is a package whose ``plugin.py`` holds one ``FeaturePlugin``. The plugin says what the feature
serves: its routes (``routes()``; ``fhir_routes()`` are mounted under ``/fhir`` behind the FHIR
router's ``_format`` guard and body limit) and the FHIR resources it declares (``capabilities``,
which the CapabilityStatement lists). Its services are opened in the server's lifespan by the
plugin's own typed ``open()``, which takes the platform parts it needs (database, audit trail,
outbound credentials, the directory as ``Members``, metrics) and adds its metrics sources.
``registry.server`` lists the plugins; nothing below it knows every feature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol

from litestar.plugins import InitPlugin

from registry.auth.guard import authorize
from registry.fhirapi.io import fhir_router

if TYPE_CHECKING:
    from collections.abc import Sequence

    from litestar.config.app import AppConfig
    from litestar.types import ControllerRouterHandler

    from registry.config import Settings
    from schemas.fhir.capability import ResourceCapability
    from schemas.services import Service

__all__ = ("FeaturePlugin", "Members")


class Members(Protocol):
    """What a feature may ask of the services directory: the entries of the services it names."""

    async def get_many(self, service_ids: list[str]) -> dict[str, Service]:
        """The directory entries among ``service_ids``, by service ID (unknown IDs are left out)."""
        ...


class FeaturePlugin(InitPlugin):
    """One feature of the server: the routes it serves and the FHIR resources it declares."""

    capabilities: ClassVar[tuple[ResourceCapability, ...]] = ()
    """The FHIR resource types (and operations) it serves, as the CapabilityStatement lists them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def routes(self) -> Sequence[ControllerRouterHandler]:
        """Its routes outside ``/fhir``."""
        return ()

    def fhir_routes(self) -> Sequence[ControllerRouterHandler]:
        """Its FHIR routes (controllers with paths relative to ``/fhir``)."""
        return ()

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Add the feature's routes to the application."""
        app_config.route_handlers.extend(self.routes())
        fhir = self.fhir_routes()
        if fhir:
            app_config.route_handlers.append(
                fhir_router(fhir, max_body_bytes=self.settings.http.max_body_bytes, authorize=authorize)
            )
        return app_config
