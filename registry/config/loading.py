"""Reading the settings: ``IEF_*`` environment variables over an optional TOML file, and their documentation.

Each field's environment variable is ``IEF_`` followed by its path in upper case joined by ``_``:
``database.url`` is ``IEF_DATABASE_URL``, ``data_dir`` is ``IEF_DATA_DIR``. The TOML file
(``IEF_CONFIG`` or ``--config``) uses the same tree as tables; environment variables win over it,
and command-line options over both. A list of tables (``auth.trusted_issuers``) is TOML only.

Every problem is a ``SettingsError`` whose message says where the bad value came from (the
environment variable, the key in the file, or the command line), so an operator can fix it at once.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec

from registry.config.settings import Settings

__all__ = ("TOML_ONLY", "SettingDoc", "SettingsError", "describe_settings", "load_settings")


class SettingsError(ValueError):
    """A setting or the settings file is wrong; the message names where the value came from."""


class SettingDoc(msgspec.Struct, frozen=True):
    """One setting as documented: its environment variable, TOML key, default and meaning."""

    env: str
    key: str
    default: str
    description: str


TOML_ONLY = "(TOML only)"
"""The ``env`` of a setting that has no environment variable: a list of tables, given in the TOML file."""


def _fields(cls: type[msgspec.Struct], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        path = (*prefix, field.name)
        field_type = field.type
        if isinstance(field_type, msgspec.inspect.StructType):
            yield from _fields(field_type.cls, path)
        else:
            yield path, field


def _table_list(field: Any) -> type[msgspec.Struct] | None:
    """The Struct of a list-of-tables setting (TOML only), or None for a scalar setting."""
    field_type = field.type
    if isinstance(field_type, msgspec.inspect.Metadata):
        field_type = field_type.type
    if isinstance(field_type, msgspec.inspect.ListType) and isinstance(
        field_type.item_type, msgspec.inspect.StructType
    ):
        return field_type.item_type.cls
    return None


def _description(field: Any) -> str:
    if isinstance(field.type, msgspec.inspect.Metadata) and field.type.extra_json_schema:
        return str(field.type.extra_json_schema.get("description", ""))
    return ""


def _shown(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        return msgspec.json.encode(value).decode()
    return str(value)


def describe_settings() -> list[SettingDoc]:
    """Every setting, in tree order, with its environment variable, default and description.

    A list of tables (``auth.trusted_issuers``) has no environment variable: it is documented as
    one row for the list and one row per key of its tables (``auth.trusted_issuers[].issuer``).
    """
    defaults = msgspec.to_builtins(Settings())
    docs: list[SettingDoc] = []
    for path, field in _fields(Settings):
        value: Any = defaults
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        table = _table_list(field)
        env = TOML_ONLY if table else "IEF_" + "_".join(path).upper()
        docs.append(SettingDoc(env=env, key=".".join(path), default=_shown(value), description=_description(field)))
        if table is not None:
            info = msgspec.inspect.type_info(table)
            assert isinstance(info, msgspec.inspect.StructType)
            for item in info.fields:
                if item.required:
                    default = "(required)"
                elif item.default is not msgspec.NODEFAULT:
                    default = _shown(msgspec.to_builtins(item.default))
                else:
                    default = _shown(msgspec.to_builtins(item.default_factory()))
                docs.append(
                    SettingDoc(
                        env=TOML_ONLY,
                        key=f"{'.'.join(path)}[].{item.name}",
                        default=default,
                        description=_description(item),
                    )
                )
    return docs


def _set_path(tree: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    node = tree
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build ``Settings`` from a TOML file, then ``IEF_*`` variables, then explicit overrides.

    Raises:
        SettingsError: the file cannot be read or is not TOML, a setting has a value of the wrong kind,
            or the file has unknown keys; the message names the variable, key or option.
    """
    env = os.environ if environ is None else environ
    tree: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    path = config_file or env.get("IEF_CONFIG")
    file_origin = None
    if path:
        tree = _read_file(Path(path), "--config" if config_file else "IEF_CONFIG")
        file_origin = f"in {path}"
    for setting_path, field in _fields(Settings):
        if _table_list(field) is not None:
            continue
        name = "IEF_" + "_".join(setting_path).upper()
        if name in env and env[name] != "":
            _set_path(tree, setting_path, env[name])
            origins[setting_path] = f"{name}={env[name]!r}"
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(tree, tuple(dotted.split(".")), value)
            origins[tuple(dotted.split("."))] = f"{value!r} on the command line"
    try:
        return msgspec.convert(tree, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explained(str(exc), origins, file_origin)) from exc


def _read_file(path: Path, given_by: str) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise SettingsError(f"the settings file {path} ({given_by}) does not exist") from None
    except OSError as exc:
        raise SettingsError(f"the settings file {path} ({given_by}) cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"the settings file {path} ({given_by}) is not valid TOML: {exc}") from None


_LOCATION = re.compile(r"(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)


def _explained(problem: str, origins: Mapping[tuple[str, ...], str], file_origin: str | None) -> str:
    """msgspec's ``Expected `int`, got `str` - at `$.http.port``` as the setting's name and its value's origin."""
    found = _LOCATION.fullmatch(problem)
    assert found is not None  # the pattern matches any text
    detail, where = found["problem"], (found["path"] or "").lstrip(".")
    detail = detail[:1].lower() + detail[1:]
    if not where:
        return f"invalid settings{' ' + file_origin if file_origin else ''}: {detail}"
    key = tuple(re.sub(r"\[[0-9]+\]", "", where).split("."))
    origin = origins.get(key)
    if origin is not None and origin.startswith("IEF_"):
        return f"invalid setting {origin} ({where}): {detail}"
    if origin is not None:
        return f"invalid setting {where}: {origin}: {detail}"
    return f"invalid setting {where}{' ' + file_origin if file_origin else ''}: {detail}"
