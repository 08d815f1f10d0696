"""The operator's command line: ``ief-registry`` (and ``python -m registry``)."""

from registry.cli.main import main, worker_listener

__all__ = ("main", "worker_listener")
