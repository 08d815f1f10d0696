"""``python -m tests.bench``: the registry matrix (``--help`` for its options); with ``--all`` or
``--only NAME,...`` every benchmark scenario and one summary table (``tests.bench.suite``)."""

import sys

from tests.bench import run, suite

if __name__ == "__main__":  # guarded: spawned helper processes import this module again
    if {arg.split("=", 1)[0] for arg in sys.argv[1:]} & {"--all", "--only"}:
        suite.main()
    else:
        run.main()
