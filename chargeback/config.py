"""Settings from a TOML config file, turned into click's default map.

Precedence, highest first: command-line flag, CHARGEBACK_* environment variable, config file,
built-in default. Top-level keys apply to every command that has that option; a table named after
a command (`[ingest]`, `[export]`, `[kafka.start]` …) applies to that command only.
"""

import tomllib
from datetime import date, time
from pathlib import Path
from typing import Any

import click

from chargeback.errors import UsageError

DEFAULT_CONFIG = Path("chargeback.toml")


def load_config(path: Path | None) -> dict[str, Any]:
    """The parsed file; a missing default file is an empty config, a missing named one an error."""
    if path is None:
        if not DEFAULT_CONFIG.exists():
            return {}
        path = DEFAULT_CONFIG
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"config file {path} is not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise UsageError(f"config file {path} is not valid TOML: it is not UTF-8") from None
    except OSError as error:
        raise UsageError(f"config file {path} cannot be read: {error.strerror}") from None


def default_map(group: click.Group, config: dict[str, Any]) -> dict[str, Any]:
    """click's default_map for `group`, from the config's top-level keys and command tables."""
    top_level = {_norm(k): v for k, v in config.items() if not _is_table_or_tables(v)}
    unknown = set(top_level) - _all_option_names(group)
    if unknown:
        raise UsageError(f"config: unknown top-level option(s): {', '.join(sorted(unknown))}")
    return _defaults_for(group, top_level, config)


def _all_option_names(group: click.Group) -> set[str]:
    names: set[str] = set()
    for command in group.commands.values():
        if isinstance(command, click.Group):
            names |= _all_option_names(command)
        names |= {p.name for p in command.params if p.name}
    return names


def _as_text(value: Any) -> Any:
    """Config values as the text a flag would carry, so click checks them like flags.

    TOML gives ints, floats, booleans and dates; handed to click as they are, some slip past its
    type checks (a number as a path is taken for a file descriptor).
    """
    if isinstance(value, list):
        return [_as_text(item) for item in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (date, time)):
        return value.isoformat()
    return str(value)


def _defaults_for(
    group: click.Group, inherited: dict[str, Any], tables: dict[str, Any], prefix: str = ""
) -> dict[str, Any]:
    # A table that names no command (a typo such as [exprot]) would otherwise be ignored.
    strays = sorted(
        k for k, v in tables.items() if _is_table_or_tables(v) and k not in group.commands
    )
    if strays:
        names = ", ".join(f"[{prefix}{k}]" for k in strays)
        raise UsageError(f"config: {names} is not a command's table")
    result: dict[str, Any] = {}
    for name, command in group.commands.items():
        table = tables.get(name, {})
        if not isinstance(table, dict):
            raise UsageError(f"config: [{name}] must be a table")
        # Nested tables and arrays of tables ([[schedule.job]]) are the command's own data.
        own = {_norm(k): v for k, v in table.items() if not _is_table_or_tables(v)}
        if isinstance(command, click.Group):
            result[name] = _defaults_for(command, {**inherited, **own}, table, f"{prefix}{name}.")
            continue
        params = {p.name for p in command.params if p.name}
        values = {k: _as_text(v) for k, v in {**inherited, **own}.items() if k in params}
        unknown = set(own) - params
        if unknown:
            raise UsageError(
                f"config: [{name}] has unknown option(s): {', '.join(sorted(unknown))}"
            )
        result[name] = values
    return result


def _is_table_or_tables(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def _norm(key: str) -> str:
    return key.replace("-", "_")
