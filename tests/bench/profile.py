"""Summarise py-spy's collapsed stacks (``--profile``): ``python -m tests.bench.profile FILE [--top N]``.

Prints the share of samples spent in each function (``self``: at the top of the stack) and under
it (``total``: anywhere on the stack, counted once per sample), largest first, and the same by
package, so a profile can be read and quoted as text.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from tests.bench.servers import ROOT

__all__ = ("Summary", "summarise")

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


class Summary:
    """Sample counts by function (self and total) and by package (self)."""

    def __init__(self) -> None:
        self.samples = 0
        self.self_counts: Counter[str] = Counter()
        self.total_counts: Counter[str] = Counter()
        self.packages: Counter[str] = Counter()


def _name(frame: str) -> tuple[str, str]:
    """``function (path:line)`` as ``module.function`` and its package (``site-packages`` stripped)."""
    match = _FRAME.match(frame)
    if not match:
        return frame, frame
    path = match["file"]
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.removeprefix(f"{ROOT}/")
    module = path.removesuffix(".py").replace("/", ".")
    return f"{module}.{match['function']}", module.split(".", 1)[0]


def summarise(lines: list[str]) -> Summary:
    """Count the samples of py-spy ``--format raw`` output (``frame;frame;… count`` per line)."""
    summary = Summary()
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        summary.samples += count
        leaf, package = frames[-1]
        summary.self_counts[leaf] += count
        summary.packages[package] += count
        for name in {name for name, _ in frames}:
            summary.total_counts[name] += count
    return summary


def main() -> None:
    """Print the summary of one profile."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    summary = summarise(args.file.read_text(encoding="utf-8").splitlines())
    share = 100 / max(summary.samples, 1)
    print(f"{summary.samples} samples")
    for title, counts in (
        ("self", summary.self_counts),
        ("total", summary.total_counts),
        ("package", summary.packages),
    ):
        print(f"\nby {title}:")
        for name, count in counts.most_common(args.top):
            print(f"  {count * share:5.1f}%  {name}")


if __name__ == "__main__":
    main()
