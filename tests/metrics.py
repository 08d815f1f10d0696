"""Reading ``/metrics`` in tests: every sample of a Prometheus text exposition, by name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

__all__ = ("Key", "Samples", "key", "samples_of")

Key = tuple[str, tuple[tuple[str, str], ...]]
Samples = dict[Key, float]


def samples_of(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def key(name: str, **labels: str) -> Key:
    """A sample's key in ``samples_of``."""
    return name, tuple(sorted(labels.items()))
