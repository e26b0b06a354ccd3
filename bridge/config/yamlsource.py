"""YAML with line numbers and `${VAR}` / `${VAR:-default}` interpolation.

`load_yaml` returns plain Python values plus a `Source` that knows, for every key
path, the line it came from, so config validation can say "config.yaml:12:
connectors.stripe.rules[0].on: ...". `Section` is the small typed reader the
config module validates with; it collects every mistake instead of stopping at the
first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import yaml

from bridge.errors import ConfigError

Path = tuple[str | int, ...]
T = TypeVar("T")

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


Lenient = Callable[[Path], bool]


@dataclass
class Source:
    file: str
    lines: dict[Path, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    # Keys `lenient` spares (see `load_yaml`): their mistakes, such as an unset `${VAR}`,
    # are kept here instead of failing the load.
    lenient: Lenient | None = None
    unresolved: dict[Path, str] = field(default_factory=dict)
    _failed: set[Path] = field(default_factory=set)

    def line(self, path: Path) -> int:
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)

    def error(self, path: Path, message: str) -> None:
        text = f"{self.file}:{self.line(path)}: {dotted(path)}: {message}"
        if self.lenient is not None and self.lenient(path):
            self.unresolved.setdefault(path, text)
            return
        if path in self._failed:  # one message per key is enough
            return
        self._failed.add(path)
        self.errors.append(text)

    def raise_errors(self) -> None:
        if self.errors:
            raise ConfigError("\n".join(self.errors))


def dotted(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def load_yaml(
    text: str,
    file: str,
    environ: Mapping[str, str] | None = None,
    lenient: Lenient | None = None,
) -> tuple[Any, Source]:
    """`lenient(path)` True: a mistake at that key (an unset or empty `${VAR}`, a short
    secret) is no error but a line of `Source.unresolved`, and an unset variable keeps its
    text as written (for commands that never use those keys)."""
    env = os.environ if environ is None else environ
    source = Source(file, lenient=lenient)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{file}:{line}: not valid YAML: {problem}") from exc
    finally:
        loader.dispose()
    if node is None:
        return {}, source
    value = _convert(node, (), source, loader, env)
    return value, source


def _convert(
    node: yaml.Node, path: Path, source: Source, loader: yaml.SafeLoader, env: Mapping[str, str]
) -> Any:
    source.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            # Keys are read as written: YAML 1.1 would turn a bare `on:` into True.
            if isinstance(key_node, yaml.ScalarNode):
                key = str(key_node.value)
            else:
                key = str(loader.construct_object(key_node))
            key_path = (*path, key)
            source.lines[key_path] = key_node.start_mark.line + 1
            if key in result:
                source.error(key_path, "duplicate key")
            result[key] = _convert(value_node, key_path, source, loader, env)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(item, (*path, index), source, loader, env)
            for index, item in enumerate(node.value)
        ]
    assert isinstance(node, yaml.ScalarNode)
    if node.tag == "tag:yaml.org,2002:str" and "${" in node.value:
        return _interpolate(node.value, path, source, env)
    return loader.construct_object(node)


def _interpolate(text: str, path: Path, source: Source, env: Mapping[str, str]) -> str:
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value:
            return value
        if default is not None:  # `${NAME:-default}`: unset or empty takes the default
            return default
        missing.append(f"environment variable {name} is {'not set' if value is None else 'empty'}")
        return ""

    resolved = _VARIABLE.sub(replace, text)
    if not missing:
        return resolved
    source.error(path, missing[0])
    return text if path in source.unresolved else ""


class Section:
    """Typed, path-aware reads from one mapping of the config."""

    def __init__(self, data: Any, path: Path, source: Source) -> None:
        self.path = path
        self.source = source
        if isinstance(data, Mapping):
            self.data: Mapping[str, Any] = data
        else:
            if data is not None:
                source.error(path, f"must be a mapping, got {type(data).__name__}")
            self.data = {}

    def error(self, key: str | int | None, message: str) -> None:
        self.source.error(self.path if key is None else (*self.path, key), message)

    def only(self, *keys: str) -> None:
        for key in self.data:
            if key not in keys:
                self.error(key, f"unknown key (expected one of: {', '.join(keys)})")

    def has(self, key: str) -> bool:
        return key in self.data

    def section(self, key: str) -> Section:
        return Section(self.data.get(key), (*self.path, key), self.source)

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                self.error(key, "is required" if key not in self.data else "must not be empty")
            return default
        if isinstance(value, bool | dict | list):
            self.error(key, f"must be a string, got {type(value).__name__}")
            return default
        return str(value)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(key, default) or default
        if value not in choices:
            self.error(key, f"must be one of {', '.join(choices)}, got {value!r}")
            return default
        return value

    def whole(self, key: str, default: int, *, minimum: int = 0) -> int:
        value = self.data.get(key, default)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            self.error(key, f"must be a whole number, got {value!r}")
            return default
        if value < minimum:
            self.error(key, f"must be at least {minimum}, got {value}")
            return default
        return value

    def flag(self, key: str, default: bool | None) -> bool | None:
        value = self.data.get(key, default)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if value is not None and not isinstance(value, bool):
            self.error(key, f"must be true or false, got {value!r}")
            return default
        return value

    def decimal(self, key: str, default: Decimal | None = None) -> Decimal | None:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool | float):
            self.error(
                key,
                f'write decimal numbers as strings or integers ("{value}"), floats are not exact',
            )
            return default
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation:
            self.error(key, f"must be a decimal number, got {value!r}")
            return default
        if not result.is_finite():
            self.error(key, f"must be a finite number, got {value!r}")
            return default
        return result

    def duration(self, key: str, default: float | None) -> float | None:
        value = self.data.get(key)
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.error(key, str(exc))
            return default

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if isinstance(value, str | int) and not isinstance(value, bool):
            return (str(value),)
        if not isinstance(value, list) or not all(
            isinstance(v, str | int) and not isinstance(v, bool) for v in value
        ):
            self.error(key, "must be a string or a list of strings")
            return ()
        return tuple(str(v) for v in value)

    def text_map(self, key: str) -> dict[str, str]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping) or any(
            isinstance(v, dict | list) or v is None for v in value.values()
        ):
            self.error(key, "must be a mapping of names to strings")
            return {}
        return {str(k): _scalar_text(v) for k, v in value.items()}

    def sections(self, key: str) -> list[Section]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(key, "must be a list")
            return []
        return [
            Section(item, (*self.path, key, index), self.source) for index, item in enumerate(value)
        ]

    def items(self) -> list[tuple[str, Section]]:
        return [(name, self.section(name)) for name in self.data]


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> float:
    """'90s', '15m', '12h', '30d', '2w' or a number of seconds -> seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value < float("inf"):  # also refuses .nan
            raise ValueError(f"must be a duration of 0 seconds or more, got {value!r}")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"must be a duration such as 30s, 15m, 12h, 30d or 2w, got {value!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
