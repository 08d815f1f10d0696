"""``python -m registry``: the same CLI as ``ief-registry``."""

from registry.cli import main

main()
