"""Every command and every option of ``ief-registry`` says what it is for in ``--help``."""

from __future__ import annotations

from collections.abc import Iterator

import click

from registry.cli import main


def _commands(command: click.Command, path: str = "ief-registry") -> Iterator[tuple[str, click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, f"{path} {name}")


def test_every_command_and_option_has_help_text() -> None:
    """No command, and no option of any command, is listed in ``--help`` without a sentence saying what it does."""
    missing: list[str] = []
    options = 0
    for path, command in _commands(main):
        if not command.help:
            missing.append(path)
        for parameter in command.params:
            if isinstance(parameter, click.Option) and not parameter.hidden:
                options += 1
                if not parameter.help:
                    missing.append(f"{path} {parameter.opts[0]}")
    assert options > 30
    assert missing == []
