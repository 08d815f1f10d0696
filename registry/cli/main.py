"""The operator's command line: ``ief-registry serve | worker | demo | db | services | records | federation |
clients | keys | token | audit | consent``.

Every command reads the same settings (``IEF_*`` variables, ``--config FILE``) and runs on the
database through one runtime (``runtime.py``): with no database URL, commands use the embedded
cluster in the data directory, started if needed and stopped afterwards only if the command
started it.
"""

from __future__ import annotations

import click

from registry.cli.access import clients, keys, token
from registry.cli.audit import audit
from registry.cli.database import db
from registry.cli.directory import services
from registry.cli.federation import federation
from registry.cli.privacy import consent
from registry.cli.records import records
from registry.cli.runtime import Runtime
from registry.cli.serving import demo, serve, worker
from registry.instance import release

__all__ = ("main",)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(release(), "--version", prog_name="ief-registry", message="%(prog)s %(version)s")
@click.option("--config", type=click.Path(dir_okay=False), help="TOML settings file (else IEF_CONFIG, if set).")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """ief-registry: the Registry and Broker of the Imaging Exchange Framework."""
    ctx.obj = Runtime(config)


for command in (serve, worker, demo, db, services, records, federation, token, keys, clients, audit, consent):
    main.add_command(command)
