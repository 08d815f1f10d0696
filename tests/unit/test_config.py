"""Settings come from IEF_* variables and an optional TOML file, environment first."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.config import TOML_ONLY, Settings, SettingsError, describe_settings, load_settings


def test_defaults_without_environment() -> None:
    """No variables and no file give the documented defaults."""
    settings = load_settings({})
    assert settings == Settings()
    assert (settings.http.host, settings.http.port, settings.database.url) == ("127.0.0.1", 8080, None)


def test_environment_variables_are_typed() -> None:
    """Variables are converted to the setting's type: ints, bools, optional strings."""
    settings = load_settings(
        {"IEF_HTTP_PORT": "9000", "IEF_DEV": "true", "IEF_DATABASE_URL": "postgresql://x/y", "IEF_DATA_DIR": "/d"}
    )
    assert (settings.http.port, settings.dev, settings.database.url, settings.data_dir) == (
        9000,
        True,
        "postgresql://x/y",
        "/d",
    )


def test_toml_file_then_environment(tmp_path: Path) -> None:
    """A TOML file sets values; an environment variable for the same key wins."""
    config = tmp_path / "ief.toml"
    config.write_text('data_dir = "/srv/ief"\n[http]\nport = 7000\nhost = "::1"\n', encoding="utf-8")
    settings = load_settings({"IEF_HTTP_PORT": "7001"}, config_file=config)
    assert (settings.data_dir, settings.http.host, settings.http.port) == ("/srv/ief", "::1", 7001)


@pytest.mark.parametrize(
    "environ", [{"IEF_HTTP_PORT": "eighty"}, {"IEF_HTTP_PORT": "70000"}, {"IEF_RECORDS_BATCH_MAX_ITEMS": "0"}]
)
def test_bad_values_are_refused(environ: dict[str, str]) -> None:
    """A value of the wrong kind or out of range is an error naming the setting."""
    with pytest.raises(ValueError, match="invalid setting"):
        load_settings(environ)


@pytest.mark.parametrize(
    ("environ", "overrides", "message"),
    [
        ({"IEF_HTTP_PORT": "abc"}, {}, "IEF_HTTP_PORT='abc' (http.port): expected `int`, got `str`"),
        ({"IEF_HTTP_WORKERS": "0"}, {}, "IEF_HTTP_WORKERS='0' (http.workers): expected `int` >= 1"),
        ({"IEF_DEV": "maybe"}, {}, "IEF_DEV='maybe' (dev): expected `bool`"),
        ({"IEF_HTTP_PORT": "80"}, {"http.port": "x"}, "http.port: 'x' on the command line: expected `int`"),
    ],
)
def test_a_bad_value_names_where_it_came_from(environ: dict[str, str], overrides: dict[str, str], message: str) -> None:
    """The error names the environment variable (or says the command line) and the setting's key, not ``$.a.b``."""
    with pytest.raises(SettingsError) as refused:
        load_settings(environ, overrides=overrides)
    assert message in str(refused.value)
    assert "$." not in str(refused.value)


def test_a_bad_value_in_the_file_names_the_file_and_key(tmp_path: Path) -> None:
    """A bad value in the TOML file is named by its key and the file; the environment does not take the blame."""
    config = tmp_path / "ief.toml"
    config.write_text('[http]\nport = "x"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match=f"invalid setting http.port in {config}: expected `int`"):
        load_settings({}, config_file=config)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("[http\n", "is not valid TOML"), ("", "cannot be read")],
)
def test_a_settings_file_that_cannot_be_used_is_said_plainly(tmp_path: Path, content: str | None, message: str) -> None:
    """A missing, unreadable or malformed settings file is one plain sentence naming it and how it was given."""
    config = tmp_path / "ief.toml"
    if content is not None:
        config.write_text(content, encoding="utf-8")
    if message == "cannot be read":
        config.unlink()
        config.mkdir()  # a folder where the file should be: reading it fails like an unreadable file
    for given, kwargs, environ in (
        ("--config", {"config_file": config}, {}),
        ("IEF_CONFIG", {}, {"IEF_CONFIG": str(config)}),
    ):
        with pytest.raises(SettingsError) as refused:
            load_settings(environ, **kwargs)  # type: ignore[arg-type]
        assert str(refused.value).startswith(f"the settings file {config} ({given})")
        assert message in str(refused.value)
        assert "Errno" not in str(refused.value)


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    """A misspelt key in the TOML file is an error, not silently ignored."""
    config = tmp_path / "ief.toml"
    config.write_text("[http]\nprot = 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="prot"):
        load_settings({}, config_file=config)


def test_every_setting_has_a_description_and_variable() -> None:
    """describe_settings lists every leaf setting with a description (serve --help prints them)."""
    docs = describe_settings()
    assert len({d.key for d in docs}) == len(docs)
    variables = [d.env for d in docs if d.env != TOML_ONLY]
    assert len(set(variables)) == len(variables)
    assert all(d.description for d in docs)
    assert {"IEF_DATABASE_URL", "IEF_DATABASE_READ_URL", "IEF_SERVICE_ID", "IEF_DATA_DIR"} <= {d.env for d in docs}


def test_trusted_issuers_come_from_toml_tables(tmp_path: Path) -> None:
    """auth.trusted_issuers is a list of TOML tables, documented key by key and never read from a variable."""
    config = tmp_path / "ief.toml"
    config.write_text(
        '[[auth.trusted_issuers]]\nissuer = "https://hc.example"\naudience = "https://reg.example"\n'
        'jwks_url = "https://hc.example/jwks"\nclients = { "ext-1" = "local-1" }\n',
        encoding="utf-8",
    )
    settings = load_settings({"IEF_AUTH_TRUSTED_ISSUERS": "ignored"}, config_file=config)
    [trusted] = settings.auth.trusted_issuers
    assert (trusted.issuer, trusted.clients, trusted.client_id_claim) == (
        "https://hc.example",
        {"ext-1": "local-1"},
        "client_id",
    )
    keys = {d.key: d for d in describe_settings()}
    assert keys["auth.trusted_issuers"].env == TOML_ONLY
    assert keys["auth.trusted_issuers[].issuer"].default == "(required)"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('issuer = "i"\naudience = "a"\n', "exactly one of jwks_url and jwks_file"),
        ('issuer = "i"\naudience = "a"\njwks_file = "k"\nalgorithms = ["HS256"]\n', "asymmetric"),
    ],
)
def test_bad_trusted_issuer_is_refused(tmp_path: Path, table: str, message: str) -> None:
    """A trusted issuer without exactly one key source, or with a symmetric algorithm, is refused."""
    config = tmp_path / "ief.toml"
    config.write_text("[[auth.trusted_issuers]]\n" + table, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_settings({}, config_file=config)
