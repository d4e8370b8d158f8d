"""Settings: precedence, validation, and the example file documents every setting."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path

import pytest

from noctis_pacs.core.settings import (
    AUTO_WORKERS_MAX,
    SECTIONS,
    Settings,
    SettingsError,
    auto_workers,
    load_settings,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "noctis.example.toml"


def test_defaults_are_the_embedded_single_node() -> None:
    settings = load_settings(environ={})
    assert settings.http.port == 8042 and settings.dimse.port == 4242
    assert settings.dimse.ae_title == "NOCTIS"
    assert settings.db_url == "sqlite:///data/index.sqlite3"


def test_dimse_workers_default_to_one_process_per_usable_cpu(tmp_path: Path) -> None:
    """``dimse.workers = "auto"`` is the default: one process per CPU this process may
    run on (its affinity), at most AUTO_WORKERS_MAX; a number is taken as it is."""
    usable = len(os.sched_getaffinity(0))
    assert auto_workers() == max(1, min(usable, AUTO_WORKERS_MAX))
    assert load_settings(environ={}).dimse.workers == auto_workers()
    config = tmp_path / "c.toml"
    config.write_text('[dimse]\nworkers = "auto"\n')
    assert load_settings(config, environ={}).dimse.workers == auto_workers()
    assert load_settings(config, environ={"NOCTIS_DIMSE_WORKERS": "3"}).dimse.workers == 3
    assert load_settings(environ={"NOCTIS_DIMSE_WORKERS": "AUTO"}).dimse.workers == auto_workers()


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[http]\nport = 1000\n[dimse]\nport = 2000\nae_title = "FILE"\n')
    settings = load_settings(
        config,
        environ={"NOCTIS_DIMSE_PORT": "3000", "NOCTIS_DIMSE_AE_TITLE": "ENV"},
        overrides={"dimse": {"ae_title": "FLAG", "port": None}},
    )
    assert settings.http.port == 1000  # file over default
    assert settings.dimse.port == 3000  # env over file
    assert settings.dimse.ae_title == "FLAG"  # flag over env


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[http]\nport = 70000\n", "http.port"),
        ('[dimse]\nae_title = "WAY_TOO_LONG_AE_TITLE"\n', "dimse.ae_title"),
        ("[nope]\nx = 1\n", "unknown section"),
        ("[http]\nprot = 1\n", "prot"),
        ('[storage]\ndb = "mysql://x"\n', "storage.db"),
        ('[dimse.remotes.X]\nae_title = "X"\n', "missing host, port"),
        ('[http]\nport = "eighty"\n', "expected a number"),
        ("[dimse]\npending_interval = -1\n", "dimse.pending_interval"),
        ('[dimse]\nworkers = "many"\n', 'dimse.workers: expected a number of processes or "auto"'),
        ("[dimse]\nworkers = 0\n", "dimse.workers: 0 is not between 1 and 64"),
    ],
)
def test_invalid_settings_name_the_setting(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings(config, environ={})


def test_remotes_are_parsed() -> None:
    settings = load_settings(
        environ={},
        overrides={
            "dimse": {
                "remotes": {
                    "WS": {
                        "ae_title": "WS1",
                        "host": "127.0.0.1",
                        "port": 11112,
                        "permissions": ["query"],
                    }
                }
            }
        },
    )
    remote = settings.dimse.remotes["WS"]
    assert (remote.ae_title, remote.port, remote.permissions) == ("WS1", 11112, ("query",))


def test_example_documents_every_setting_and_loads() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    for section in SECTIONS:
        fields = {f.name for f in dataclasses.fields(getattr(Settings(), section))}
        fields.discard("remotes")  # documented as a commented table
        assert section in data, section
        assert fields == set(data[section]), (section, fields ^ set(data[section]))
        for sub in dataclasses.fields(getattr(Settings(), section)):
            value = getattr(getattr(Settings(), section), sub.name)
            if dataclasses.is_dataclass(value):
                nested = {f.name for f in dataclasses.fields(value)}
                assert nested == set(data[section][sub.name]), (section, sub.name)
    assert "[dimse.remotes." in EXAMPLE.read_text()
    load_settings(EXAMPLE, environ={})
    for other in ("production-postgresql.toml", "multi-node.toml"):
        load_settings(EXAMPLE.parent / other, environ={})
