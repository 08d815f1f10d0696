"""``python -m tests.bench``: the benchmark (``--help`` for its options)."""

from tests.bench.run import main

main()
