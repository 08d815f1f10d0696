"""The operator's command line: ``ief-registry`` (and ``python -m registry``)."""

from registry.cli.main import main

__all__ = ("main",)
