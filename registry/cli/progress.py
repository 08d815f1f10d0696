"""Progress of a long command: a bar on a terminal (stderr), a line when it resumes, and a summary at the end.

On a terminal the bar is redrawn at most ten times a second; otherwise (a log, a pipe) nothing is
drawn while the command runs, so logs stay readable: a line says where a resumed run starts, and
the summary line says where it ended.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

import click

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from registry.cli.runtime import Runtime
    from registry.records.jobs import JobResult, LifecycleJobs

__all__ = ("ProgressLine", "TerminalBar", "run_job")

_WIDTH = 30
_EVERY = 0.1


class TerminalBar:
    """A progress bar on a terminal (stderr by default), redrawn at most ten times a second and always when done;
    nothing at all when the stream is not a terminal. The lifecycle commands and the audit commands draw with it."""

    def __init__(self, label: str, *, stream: TextIO | None = None) -> None:
        self.label = label
        self._stream = stream or sys.stderr
        self.on_terminal = self._stream.isatty()
        self._drawn = 0.0
        self._open = False

    def draw(self, done: int, total: int, suffix: str = "") -> None:
        """``done`` of ``total``, and ``suffix`` after the share."""
        now = time.monotonic()
        if not self.on_terminal or (now - self._drawn < _EVERY and done < total):
            return
        self._drawn = now
        share = done / total if total else 1.0
        filled = int(share * _WIDTH)
        bar = "#" * filled + "." * (_WIDTH - filled)
        self._stream.write(f"\r{self.label} [{bar}] {done:,}/{total:,} {share:4.0%}{suffix}")
        self._stream.flush()
        self._open = True

    def close(self) -> None:
        """End the bar's line (when one was drawn)."""
        if self._open:
            self._stream.write("\n")
            self._stream.flush()
            self._open = False


class ProgressLine:
    """The ``Progress`` of a lifecycle command (``registry.records.jobs.Progress``), drawn for the operator."""

    def __init__(self, label: str, *, stream: TextIO | None = None, verb: str = "changed") -> None:
        self.label = label
        self.verb = verb
        self._bar = TerminalBar(label, stream=stream)
        self._started = time.monotonic()
        self._first: int | None = None

    def update(self, done: int, total: int, changed: int) -> None:
        """Redraw the bar (on a terminal); say where a resumed run starts."""
        if self._first is None:
            self._first = done
            if done:
                click.echo(f"{self.label}: resuming at {done:,} of {total:,} records", err=True)
        rate = (done - self._first) / max(time.monotonic() - self._started, 1e-6)
        self._bar.draw(done, total, f" {rate:,.0f}/s {changed:,} {self.verb}")

    def summary(self, total: int, processed: int, changed: int, seconds: float) -> str:
        """The line that ends the command (on stdout): what it went through and how fast."""
        self._bar.close()
        rate = processed / seconds if seconds > 0 else 0.0
        return (
            f"{self.label}: {total:,} records, {processed:,} processed by this run ({changed:,} {self.verb}) "
            f"in {seconds:.1f} s ({rate:,.0f} records/s)"
        )


def run_job(
    runtime: Runtime, label: str, verb: str, start: Callable[[LifecycleJobs, ProgressLine, int], Awaitable[JobResult]]
) -> None:
    """Run a lifecycle job (the database migrated first) with its progress line, then print its summary."""
    settings = runtime.settings()
    progress = ProgressLine(label, verb=verb)
    chunk = settings.records.lifecycle_chunk_size
    result = runtime.run(settings, lambda s: start(s.lifecycle(), progress, chunk), migrate=True)
    click.echo(progress.summary(result.total, result.processed, result.changed, result.seconds))
