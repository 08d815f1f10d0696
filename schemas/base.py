"""Struct bases for every wire type."""

from __future__ import annotations

import msgspec

__all__ = ("Input", "Received", "Wire")


class Wire(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """A message we send: camelCase JSON, defaults left out."""


class Input(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """A message a client sends: camelCase JSON, unknown fields refused."""


class Received(msgspec.Struct, kw_only=True, rename="camel"):
    """A message another server sends us (a peer registry's answer): camelCase JSON, unknown fields
    tolerated, so a peer on a newer release that adds fields is still understood."""
