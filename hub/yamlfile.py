"""Read a YAML file keeping the line of every key, so errors can point at it."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import ConfigError, Problem

Loc = tuple[str | int, ...]


class Loader(yaml.SafeLoader):
    """SafeLoader that reads decimals exactly as written: 4.50 is Decimal('4.50'), not 4.5."""


def _decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        return Decimal(text)
    except InvalidOperation:
        return loader.construct_yaml_float(node)  # .inf, .nan


Loader.add_constructor("tag:yaml.org,2002:float", _decimal)


def safe_load(text: str) -> Any:
    return yaml.load(text, Loader=Loader)


class YamlDoc:
    """A parsed YAML document plus the line (1-based) of each path in it."""

    def __init__(self, file: str, data: Any, lines: dict[Loc, int]) -> None:
        self.file = file
        self.data = data
        self.lines = lines

    def line(self, loc: Loc) -> int | None:
        """The line of ``loc`` or of its nearest ancestor that has one."""
        for n in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:n]))
            if line is not None:
                return line
        return None

    def problem(self, loc: Loc, message: str) -> Problem:
        return Problem(self.file, format_loc(loc), message, self.line(loc))


def validation_problems(doc: YamlDoc, prefix: Loc, exc: ValidationError) -> list[Problem]:
    """Pydantic's errors as problems at their file:line (``prefix``: where the model starts)."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc: Loc = (*prefix, *err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        out.append(doc.problem(loc, message))
    return out


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_yaml(path: Path, text: str | None = None) -> YamlDoc:
    name = str(path)
    try:
        source = path.read_text(encoding="utf-8") if text is None else text
    except OSError as exc:
        raise ConfigError([Problem(name, "", f"cannot read file: {exc.strerror}")]) from None
    try:
        node = yaml.compose(source, Loader=Loader)
        data = safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(name, "", f"invalid YAML: {reason}", line)]) from None
    lines: dict[Loc, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return YamlDoc(name, data, lines)


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value if isinstance(key, yaml.ScalarNode) else str(key)
            lines[(*loc, k)] = key.start_mark.line + 1
            _walk(value, (*loc, k), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*loc, i), lines)
