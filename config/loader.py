"""Loading settings: a TOML file, then environment overrides, then validation.

The loader knows nothing about particular settings: it walks msgspec's description of the
`Settings` type (``msgspec.inspect.type_info``) to resolve environment variable names to
keys, convert their strings to the field's type, and check every value, so a new field
needs no change here. Every problem names where the value came from, the dotted key, what
is wrong and what was expected; none shows a secret's value.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi

from config.errors import ConfigError, Problem
from config.secrets import Secret, dec_hook, describe_value, redact_text, reveal_enc_hook
from config.settings import AccountSettings, Settings, iter_problems, with_local_endpoints

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "accounts_toml",
    "convert_settings",
    "load_settings",
]

DEFAULT_CONFIG_FILE = "switchboard.toml"
ENV_PREFIX = "SWITCHBOARD__"
_DEFAULTS_SOURCE = "defaults"
# The names already used in the field for a single account's credentials.
_TELEGRAM_ALIASES: dict[str, tuple[str, ...]] = {
    "TELEGRAM__API_ID": ("telegram", "api_id"),
    "TELEGRAM__API_HASH": ("telegram", "api_hash"),
}
_TELEGRAM_SESSION_STRING = "TELEGRAM__SESSION_STRING"
_DEFAULT_ACCOUNT = "main"
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})

T = TypeVar("T", bound=msgspec.Struct)
Key = tuple[str, ...]


def load_settings(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Load, override and validate the settings.

    ``path`` None means ``./switchboard.toml`` if it exists, else defaults only; ``env`` None
    means ``os.environ``. Overrides are ``SWITCHBOARD__SECTION__KEY`` (case-insensitive, one
    more ``__`` per level, e.g. ``SWITCHBOARD__ACCOUNTS__ALICE__PHONE``; an empty value sets
    an optional key to None) and ``TELEGRAM__API_ID``, ``TELEGRAM__API_HASH`` (the
    ``telegram`` section) and ``TELEGRAM__SESSION_STRING`` (the only account's
    session_string; account ``main`` if none is configured). ``SWITCHBOARD__`` names win over
    ``TELEGRAM__`` names, and both over the file.

    Raises ConfigError listing every problem: unreadable or invalid TOML, an unknown key, a
    value of the wrong type or out of range, a missing required key, or a broken rule between
    values (see `config.settings.iter_problems`).
    """
    if path is None:
        default = Path(DEFAULT_CONFIG_FILE)
        file = default if default.is_file() else None
    else:
        file = Path(path)
    if env is None:
        env = os.environ
    data: dict[str, Any] = {}
    sources: dict[Key, str] = {}
    if file is not None:
        data = _read_toml(file)
        _record_sources(data, (), str(file), sources)
    overrides, problems = _env_overrides(Settings, env, data)
    for key, value, source in overrides:
        _set_in(data, key, value)
        sources[key] = source
    # Check the merged data even when the environment had problems, to report all at once.
    return _convert(Settings, data, sources, problems)


def accounts_toml(accounts: Mapping[str, AccountSettings]) -> str:
    """The ``[accounts.<name>]`` tables of ``accounts`` as TOML, secrets revealed.

    `load_settings` reads the text back to equal settings. Unset (None) and empty values
    are left out; a nested section becomes an inline table.
    """
    tables = []
    for name, account in accounts.items():
        data = msgspec.to_builtins(account, enc_hook=reveal_enc_hook)
        lines = [f"{key} = {_toml_value(value)}" for key, value in data.items() if value]
        tables.append("\n".join([f"[accounts.{name}]", *lines]))
    return "\n\n".join(tables) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        items = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None)
        return f"{{ {items} }}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        # A JSON string is a TOML basic string: the same quotes and escapes.
        return json.dumps(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def convert_settings(
    cls: type[T], data: Mapping[str, Any], sources: Mapping[Key, str] | None = None
) -> T:
    """Check ``data`` against Struct type ``cls`` and build it.

    ``sources`` maps each key to where its value came from, for messages. For `Settings`
    the rules of `iter_problems` are checked too. Raises ConfigError listing every problem.
    """
    return _convert(cls, data, sources or {}, [])


def _convert(
    cls: type[T], data: Mapping[str, Any], sources: Mapping[Key, str], problems: list[Problem]
) -> T:
    """`convert_settings`, adding to ``problems`` already found; raises ConfigError."""
    _check(data, mi.type_info(cls), (), sources, problems)
    if problems:
        raise ConfigError(problems)
    try:
        result = msgspec.convert(data, cls, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        # Only reached for a type _check does not model; msgspec's message names the path
        # and the expected type, and is redacted in case it quotes a value.
        problem = Problem(_source_of((), sources), "", redact_text(str(exc)))
        raise ConfigError([problem]) from None
    if isinstance(result, Settings):
        result = with_local_endpoints(result)
        for dotted, message in iter_problems(result):
            key = tuple(dotted.split("."))
            problems.append(Problem(_source_of(key, sources), dotted, message))
        if problems:
            raise ConfigError(problems)
    return result


def _read_toml(path: Path) -> dict[str, Any]:
    """Parse the TOML file at ``path``; raises ConfigError if it is unreadable or invalid."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(str(path), "", f"cannot read: {exc.strerror}")]) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([Problem(str(path), "", "not valid UTF-8")]) from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message says what is wrong and where ("(at line 3, column 5)").
        raise ConfigError([Problem(str(path), "", f"invalid TOML: {exc}")]) from None


def _record_sources(value: Any, key: Key, source: str, sources: dict[Key, str]) -> None:
    if key:
        sources[key] = source
    if isinstance(value, dict):
        for k, v in value.items():
            _record_sources(v, (*key, str(k)), source, sources)


def _source_of(key: Key, sources: Mapping[Key, str]) -> str:
    """Where the value at ``key`` came from.

    A key set directly answers with its source; a table with the sources of everything set
    under it; otherwise its nearest ancestor's source, or ``defaults``.
    """
    if key in sources:
        return sources[key]
    below = sorted({s for k, s in sources.items() if k[: len(key)] == key and len(k) > len(key)})
    if below:
        return ", ".join(below)
    for n in range(len(key) - 1, 0, -1):
        if key[:n] in sources:
            return sources[key[:n]]
    return _DEFAULTS_SOURCE


def _set_in(data: dict[str, Any], key: Key, value: Any) -> None:
    node = data
    for part in key[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[key[-1]] = value


# --- environment ---------------------------------------------------------------------------


class _EnvError(Exception):
    """An environment variable that cannot be applied; the message is the problem."""


def _env_overrides(
    cls: type[msgspec.Struct], env: Mapping[str, str], file_data: Mapping[str, Any]
) -> tuple[list[tuple[Key, Any, str]], list[Problem]]:
    """Resolve the environment into ``(key, converted value, variable name)`` overrides.

    Returns them in the order to apply (``TELEGRAM__`` aliases first, so ``SWITCHBOARD__``
    names win) and the problems found. Other ``TELEGRAM__`` names are left alone: that
    prefix is shared with other tools.
    """
    root = mi.type_info(cls)
    ours: list[tuple[Key, Any, str]] = []
    aliases: list[tuple[Key, Any, str]] = []
    problems: list[Problem] = []
    session_string: tuple[str, str] | None = None
    for name in sorted(env):
        upper = name.upper()
        raw = env[name]
        if upper.startswith(ENV_PREFIX):
            parts, target = [p.lower() for p in upper[len(ENV_PREFIX) :].split("__")], ours
        elif upper in _TELEGRAM_ALIASES:
            parts, target = list(_TELEGRAM_ALIASES[upper]), aliases
        else:
            if upper == _TELEGRAM_SESSION_STRING and raw.strip():
                # Empty counts as unset: compose files often pass the variable through empty.
                session_string = (name, raw.strip())
            continue
        try:
            key, field_type = _resolve(root, parts)
        except _EnvError as exc:
            problems.append(Problem(name, "", str(exc)))
            continue
        try:
            target.append((key, _from_env(raw, field_type), name))
        except _EnvError as exc:
            problems.append(Problem(name, ".".join(key), str(exc)))
    if session_string is not None:
        var, raw = session_string
        accounts = set(file_data.get("accounts") or {}) | {
            key[1] for key, _, _ in ours if key[0] == "accounts" and len(key) > 1
        }
        if len(accounts) > 1:
            names = ", ".join(sorted(accounts))
            problems.append(
                Problem(
                    var,
                    "",
                    f"several accounts are configured ({names}), so it is unclear which one "
                    f"it belongs to; set {ENV_PREFIX}ACCOUNTS__<NAME>__SESSION_STRING instead",
                )
            )
        else:
            account = accounts.pop() if accounts else _DEFAULT_ACCOUNT
            key = ("accounts", account, "session_string")
            aliases.append((key, Secret(raw), var))
    return aliases + ours, problems


def _resolve(root: mi.Type, parts: list[str]) -> tuple[Key, mi.Type]:
    """Map the lower-cased name parts after the prefix to a key and its field type.

    Raises _EnvError if a part names no key, or the name stops at a table.
    """
    key: list[str] = []
    t = root
    for part in parts:
        t = _strip_optional(t)
        if not part:
            raise _EnvError("empty name part (two '__' in a row, or a trailing '__')")
        if isinstance(t, mi.StructType):
            names = {f.encode_name: f for f in t.fields}
            if part not in names:
                raise _EnvError(_unknown_key_message((*key, part), names))
            t = names[part].type
        elif isinstance(t, mi.DictType):
            t = t.value_type
        else:
            raise _EnvError(f"unknown key '{'.'.join((*key, part))}'")
        key.append(part)
    if isinstance(_strip_optional(t), mi.StructType | mi.DictType):
        dotted = ".".join(key) or "(top level)"
        raise _EnvError(
            f"'{dotted}' is a table; set its keys one by one, "
            f"e.g. {ENV_PREFIX}{'__'.join([*key, '<KEY>']).upper()}"
        )
    return tuple(key), t


def _strip_optional(t: mi.Type) -> mi.Type:
    """``X | None`` -> ``X`` when X is the only other member; anything else unchanged."""
    if isinstance(t, mi.UnionType):
        others = [m for m in t.types if not isinstance(m, mi.NoneType)]
        if len(others) == 1:
            return others[0]
    return t


def _is_optional(t: mi.Type) -> bool:
    return isinstance(t, mi.UnionType) and any(isinstance(m, mi.NoneType) for m in t.types)


def _from_env(raw: str, t: mi.Type) -> Any:
    """Convert an environment string to the value of a field of type ``t``.

    Raises _EnvError saying what was expected; the value is shown only if it cannot be a
    secret (see `describe_value`).
    """
    text = raw.strip()
    if _is_optional(t) and not text:
        return None
    t = _strip_optional(t)
    expected = _describe_type(t)
    if isinstance(t, mi.CustomType) and t.cls is Secret:
        return Secret(text)
    if isinstance(t, mi.StrType):
        return text
    if isinstance(t, mi.BoolType):
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
    elif isinstance(t, mi.IntType):
        try:
            return int(text, 10)
        except ValueError:
            pass
    elif isinstance(t, mi.FloatType):
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    elif isinstance(t, mi.ListType) and isinstance(t.item_type, mi.StrType):
        # Comma-separated, as lists are usually written in environment variables.
        return [item.strip() for item in text.split(",") if item.strip()]
    elif isinstance(t, mi.LiteralType):
        for choice in t.values:
            if isinstance(choice, str) and choice.lower() == text.lower():
                return choice
            if not isinstance(choice, str) and str(choice) == text:
                return choice
    else:
        raise _EnvError(f"a {expected} cannot be set from the environment")
    raise _EnvError(f"expected {expected}, got {describe_value(raw)}")


# --- checking ------------------------------------------------------------------------------

_TOML_TYPE_NAMES = {
    bool: "bool",
    int: "int",
    float: "float",
    str: "str",
    dict: "table",
    list: "array",
}


def _type_name(value: Any) -> str:
    if isinstance(value, Secret):
        return "str"
    return _TOML_TYPE_NAMES.get(type(value), type(value).__name__)


def _describe_type(t: mi.Type) -> str:
    """A short human name for type ``t``, as used in "expected ..." messages."""
    if isinstance(t, mi.UnionType):
        return " or ".join(_describe_type(m) for m in t.types)
    if isinstance(t, mi.NoneType):
        return "nothing (leave it out)"
    if isinstance(t, mi.BoolType):
        return "bool"
    if isinstance(t, mi.IntType | mi.FloatType):
        base = "int" if isinstance(t, mi.IntType) else "float"
        bounds = [
            f"{op} {limit}"
            for op, limit in ((">", t.gt), (">=", t.ge), ("<", t.lt), ("<=", t.le))
            if limit is not None
        ]
        return f"{base} {' and '.join(bounds)}" if bounds else base
    if isinstance(t, mi.StrType):
        return f"str matching {t.pattern}" if t.pattern else "str"
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(repr(v) for v in t.values)
    if isinstance(t, mi.CustomType) and t.cls is Secret:
        return "str (secret)"
    if isinstance(t, mi.StructType):
        return "table"
    if isinstance(t, mi.DictType):
        return f"table of {_describe_type(t.value_type)}"
    if isinstance(t, mi.ListType):
        return f"array of {_describe_type(t.item_type)}"
    return type(t).__name__


def _unknown_key_message(key: Key, known: Mapping[str, Any]) -> str:
    dotted = ".".join(key)
    close = difflib.get_close_matches(key[-1], list(known), n=1)
    hint = f" (did you mean '{'.'.join((*key[:-1], close[0]))}'?)" if close else ""
    return f"unknown key '{dotted}'{hint}"


def _check(
    value: Any, t: mi.Type, key: Key, sources: Mapping[Key, str], problems: list[Problem]
) -> None:
    """Append a Problem for everything in ``value`` that does not fit type ``t``."""

    def fail(message: str, at: Key = key) -> None:
        problems.append(Problem(_source_of(at, sources), ".".join(at), message))

    if _is_optional(t) and value is None:
        return
    t = _strip_optional(t)
    expected = _describe_type(t)
    if isinstance(t, mi.AnyType):
        return
    if isinstance(t, mi.StructType):
        if not isinstance(value, dict):
            fail(f"expected {expected}, got {_type_name(value)}")
            return
        fields = {f.encode_name: f for f in t.fields}
        for name, item in value.items():
            field = fields.get(name)
            if field is None:
                problems.append(
                    Problem(
                        _source_of((*key, name), sources),
                        "",
                        _unknown_key_message((*key, name), fields),
                    )
                )
            else:
                _check(item, field.type, (*key, name), sources, problems)
        for field in t.fields:
            if field.required and field.encode_name not in value:
                fail(
                    f"missing required key '{field.encode_name}' "
                    f"(expected {_describe_type(field.type)})"
                )
        return
    if isinstance(t, mi.DictType):
        if not isinstance(value, dict):
            fail(f"expected {expected}, got {_type_name(value)}")
            return
        for name, item in value.items():
            key_problems: list[Problem] = []
            _check(name, t.key_type, (*key, str(name)), sources, key_problems)
            if key_problems:
                expected_name = _describe_type(t.key_type)
                fail(
                    f"invalid name {describe_value(name)}: expected {expected_name}",
                    (*key, str(name)),
                )
                continue
            _check(item, t.value_type, (*key, name), sources, problems)
        return
    if isinstance(t, mi.ListType):
        if not isinstance(value, list):
            fail(f"expected {expected}, got {_type_name(value)}")
            return
        for i, item in enumerate(value):
            _check(item, t.item_type, (*key, str(i)), sources, problems)
        return
    if isinstance(t, mi.CustomType) and t.cls is Secret:
        if not isinstance(value, str | Secret):
            fail(f"expected {expected}, got {_type_name(value)}")
        return
    if isinstance(t, mi.LiteralType):
        if value not in t.values or type(value) is bool:
            fail(f"expected {expected}, got {describe_value(value)}")
        return
    if isinstance(t, mi.BoolType):
        if not isinstance(value, bool):
            fail(f"expected {expected}, got {_type_name(value)}")
        return
    if isinstance(t, mi.IntType | mi.FloatType):
        allowed: tuple[type, ...] = (int,) if isinstance(t, mi.IntType) else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed):
            fail(f"expected {expected}, got {_type_name(value)}")
        elif isinstance(value, float) and not math.isfinite(value):
            fail(f"expected a finite {expected}, got {value}")
        elif not _within(value, t):
            fail(f"expected {expected}, got {value}")
        return
    if isinstance(t, mi.StrType):
        if not isinstance(value, str):
            fail(f"expected {expected}, got {_type_name(value)}")
        elif t.pattern is not None and not _matches(t.pattern, value):
            fail(f"expected {expected}, got {describe_value(value)}")
        return
    # Any other type: msgspec.convert checks it and its error is reported as is.


def _within(value: float, t: mi.IntType | mi.FloatType) -> bool:
    return not (
        (t.gt is not None and not value > t.gt)
        or (t.ge is not None and not value >= t.ge)
        or (t.lt is not None and not value < t.lt)
        or (t.le is not None and not value <= t.le)
    )


def _matches(pattern: str, value: str) -> bool:
    # msgspec applies patterns with re.search semantics; ours are anchored explicitly.
    return re.search(pattern, value) is not None
