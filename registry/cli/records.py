"""``records``: the operator's view of records as a whole (``records stale``)."""

from __future__ import annotations

import click
import msgspec

from registry.cli.progress import run_job
from registry.cli.runtime import Runtime
from registry.records.jobs import DEFAULT_STALE_AGE, parse_age

__all__ = ("records",)


@click.group()
def records() -> None:
    """Registry records as a whole."""


@records.command("stale")
@click.option("--older-than", default=DEFAULT_STALE_AGE, show_default=True,
              help="Not registered for this long: 365d, 26w, 12h…")  # fmt: skip
@click.option("--archive", is_flag=True, help="Archive them (resumable), instead of only reporting them.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.pass_obj
def records_stale(runtime: Runtime, older_than: str, archive: bool, as_json: bool) -> None:
    """Report (per service, counts) or archive the active records not registered for a while."""
    settings = runtime.settings()
    age = parse_age(older_than)
    if archive:
        run_job(runtime, "records stale --archive", "archived",
                lambda jobs, progress, chunk: jobs.archive_stale(age, progress, chunk=chunk))  # fmt: skip
        return
    cutoff, report = runtime.run(settings, lambda s: s.lifecycle().stale(age), migrate=True)
    if as_json:
        click.echo(msgspec.json.encode({"cutoff": cutoff, "services": report}).decode())
        return
    click.echo(f"active records not registered since {cutoff.isoformat(timespec='seconds')}:")
    for line in report:
        click.echo(f"{line.service_id}  {line.records:>10,}  {line.status:8}  {line.name}")
    click.echo(f"{sum(line.records for line in report):,} records at {len(report)} services")
