"""A well-behaved client in a process of its own: one look-up after another, each one's latency.

``python -m tests.security.probe URL SECONDS`` (the token in ``PROBE_TOKEN``) sends
``GET URL`` on one keep-alive connection every 20 ms for ``SECONDS`` and prints a JSON object:
the latencies in milliseconds and the statuses. It runs apart from the attackers of
``test_abuse.py`` so that their work in the test process does not count as the server's.
"""

from __future__ import annotations

import os
import sys
import time

import httpx
import msgspec

__all__ = ("main",)


def main(argv: list[str]) -> int:
    """Probe until the time is up; print the measurements."""
    url, seconds = argv[0], float(argv[1])
    headers = {"Authorization": f"Bearer {os.environ['PROBE_TOKEN']}"}
    latencies: list[float] = []
    statuses: list[int] = []
    deadline = time.monotonic() + seconds
    with httpx.Client(headers=headers, timeout=10) as http:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                statuses.append(http.get(url).status_code)
            except httpx.HTTPError:
                statuses.append(0)
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(max(0.0, 0.02 - (time.perf_counter() - started)))
    sys.stdout.write(msgspec.json.encode({"latencies_ms": latencies, "statuses": statuses}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
