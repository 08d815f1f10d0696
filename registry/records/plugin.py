"""How the records feature joins the server: the native registry API (DESIGN §4.1).

The records service itself is the registry's core: the server's lifespan opens it (with the
federation resolver behind it) for every feature that reads records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar import Router

from registry.feature import FeaturePlugin
from registry.records.controller import BatchController, RecordController, ReportController

if TYPE_CHECKING:
    from collections.abc import Sequence

    from litestar.types import ControllerRouterHandler

__all__ = ("RecordsPlugin",)


class RecordsPlugin(FeaturePlugin):
    """The native API: record writes and look-ups, and the batch endpoint with its larger body limit."""

    def routes(self) -> Sequence[ControllerRouterHandler]:
        """The two routers of the native API (ordinary routes, and the batch endpoint)."""
        http = self.settings.http
        return (
            Router(
                path="/", route_handlers=[RecordController, ReportController], request_max_body_size=http.max_body_bytes
            ),
            Router(path="/", route_handlers=[BatchController], request_max_body_size=http.batch_max_body_bytes),
        )
