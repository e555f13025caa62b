"""Every example in docs/mappings.md runs, and gives exactly the output (or error) it shows.

Conventions of the page (it says so itself, in "About the examples"):

- a runnable example is a fenced block tagged ``yaml mapping`` (a whole mapping file), then a
  ``json input`` block, then either ``json output`` (``null`` = the event is dropped) or
  ``text error`` (every line of it must appear in the error message);
- a mapping block whose first line is ``# mappings/<name>.yaml`` is compiled under ``<name>``,
  otherwise under ``example``;
- ``yaml fragment`` blocks (first line ``# mappings/<name>.yaml``) are fragments that examples may
  ``use:``; an example with ``use:`` is run from a folder holding the fragments and itself;
- a ``yaml test`` block (first line ``# mappings/tests/<file>.yaml``) is a test file for the
  nearest example above it whose name is the test file's ``mapping:``; every case must pass;
- a ``yaml check`` block (first line ``# mappings/<name>.yaml``) is a mapping file that
  ``load_mappings`` must refuse;
- the first ``console`` block after a ``yaml test`` or ``yaml check`` block (before any other yaml
  block) is run: each ``$ hub ...`` command runs in a folder holding that file (plus, for a test
  file, the page's fragments and the mapping it tests) and must print exactly what is shown;
- every example runs with ``META`` (``meta.connection`` and ``meta.origin`` ``shop``,
  ``meta.system`` ``shopify``) and the deterministic golden-id resolver
  (``StubResolver({})``), and outputs of entity or model targets are validated.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from hub.canonical import validate
from hub.errors import ConfigError, ProcessingError
from hub.mapping import compile_mapping, load_mappings
from hub.mapping.engine import CompiledMapping
from hub.mapping.functions import FUNCTIONS
from hub.mapping.testing import StubResolver, paths_differ, run_file

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "mappings.md"
DOC_LABEL = Path("docs/mappings.md")
META = {"connection": "shop", "origin": "shop", "system": "shopify"}

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*$", re.M)
_FILE_HEADER = re.compile(r"\A#\s*mappings/(\S+)\.ya?ml\s*$", re.M)


@dataclass
class Block:
    info: str
    body: str
    line: int
    heading: str


@dataclass
class Example:
    id: str
    line: int
    mapping: str
    input: str
    expected: str
    kind: str  # "output" or "error"

    @property
    def name(self) -> str:
        return _file_name(self.mapping) or "example"


@dataclass
class Scenario:
    """A ``yaml test`` or ``yaml check`` block, and the ``console`` block that shows its run."""

    id: str
    line: int
    kind: str  # "test" or "check"
    body: str
    path: str  # where the block's file goes, relative to the folder the commands run in
    example: Example | None  # for "test": the mapping it tests
    console: Block | None


def _file_name(body: str) -> str | None:
    m = _FILE_HEADER.match(body)
    return m.group(1) if m else None


def _blocks(text: str) -> list[Block]:
    headings = [(m.start(), m.group(2)) for m in _HEADING.finditer(_without_fences(text))]
    blocks = []
    for m in _FENCE.finditer(text):
        heading = ""
        for pos, title in headings:
            if pos > m.start():
                break
            heading = title
        line = text.count("\n", 0, m.start()) + 1
        blocks.append(Block(" ".join(m.group(1).split()), m.group(2), line, heading))
    return blocks


def _without_fences(text: str) -> str:
    """The page with the inside of fenced blocks blanked (a YAML comment is not a heading)."""
    return _FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def _parse(text: str) -> tuple[list[Example], list[Block], list[Scenario]]:
    blocks = _blocks(text)
    examples: list[Example] = []
    fragments: list[Block] = []
    scenarios: list[Scenario] = []
    seen: dict[str, int] = {}

    def unique(heading: str) -> str:
        seen[heading] = seen.get(heading, 0) + 1
        return heading if seen[heading] == 1 else f"{heading} #{seen[heading]}"

    def console_after(i: int) -> Block | None:
        """The first console block after blocks[i], unless another yaml block comes first."""
        for b in blocks[i + 1 :]:
            if b.info == "console":
                return b
            if b.info.startswith("yaml"):
                return None
        return None

    i = 0
    while i < len(blocks):
        b = blocks[i]
        where = f"docs/mappings.md:{b.line}"
        if b.info == "yaml fragment":
            assert _file_name(b.body), f"{where}: a fragment starts with # mappings/NAME.yaml"
            fragments.append(b)
        elif b.info == "yaml test":
            name = str((yaml.safe_load(b.body) or {}).get("mapping"))
            found = [e for e in examples if e.name == name]
            assert found, f"{where}: no example mapping named {name!r} above this test file"
            path = f"mappings/{_file_name(b.body) or 'tests/docs'}.yaml"
            scenarios.append(
                Scenario(
                    unique(b.heading), b.line, "test", b.body, path, found[-1], console_after(i)
                )
            )
        elif b.info == "yaml check":
            file_name = _file_name(b.body)
            console = console_after(i)
            assert file_name and console, (
                f"{where}: a yaml check block needs a header and a console"
            )
            scenarios.append(
                Scenario(
                    unique(b.heading),
                    b.line,
                    "check",
                    b.body,
                    f"mappings/{file_name}.yaml",
                    None,
                    console,
                )
            )
        elif b.info == "yaml mapping":
            rest = blocks[i + 1 : i + 3]
            infos = [r.info for r in rest]
            assert len(rest) == 2 and infos[0] == "json input", (
                f"{where}: a yaml mapping block must be followed by json input, got {infos}"
            )
            assert infos[1] in ("json output", "text error"), (
                f"{where}: after json input comes json output or text error, got {infos[1]}"
            )
            examples.append(
                Example(
                    unique(b.heading),
                    b.line,
                    b.body,
                    rest[0].body,
                    rest[1].body,
                    "output" if infos[1] == "json output" else "error",
                )
            )
            i += 2
        elif b.info in ("json input", "json output", "text error"):
            pytest.fail(f"{where}: {b.info} block without a yaml mapping")
        i += 1
    return examples, fragments, scenarios


EXAMPLES, FRAGMENTS, SCENARIOS = _parse(DOC.read_text(encoding="utf-8"))


def _write_set(folder: Path, example: Example) -> Path:
    """A mappings folder with the page's fragments and this example; returns its path."""
    mappings = folder / "mappings"
    for fragment in FRAGMENTS:
        path = mappings / f"{_file_name(fragment.body)}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(fragment.body, encoding="utf-8")
    path = mappings / f"{example.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(example.mapping, encoding="utf-8")
    return mappings


def _compile(example: Example, folder: Path) -> CompiledMapping:
    mapping: CompiledMapping | None = compile_mapping(example.name, DOC_LABEL, text=example.mapping)
    if mapping is not None and mapping.uses:
        mapping = load_mappings(_write_set(folder, example)).get(example.name)
    assert mapping is not None
    return mapping


def _run(example: Example, folder: Path) -> tuple[Any, str | None]:
    """(output, None) or (None, error message)."""
    try:
        mapping = _compile(example, folder)
        payload = json.loads(example.input, parse_float=Decimal)
        output = mapping.apply(payload, META, StubResolver({}))
        if output is not None and mapping.target_entity:
            validate(mapping.target_entity, output)
        elif output is not None and mapping.target_model is not None:
            try:
                mapping.target_model.model_validate(output)
            except ValidationError as exc:
                return None, f"{mapping.target_model.__name__} is invalid: {exc}"
    except (ConfigError, ProcessingError) as exc:
        return None, str(exc)
    return output, None


@pytest.mark.filterwarnings("error")  # e.g. '\.' in an expression: show r'\.' instead
@pytest.mark.parametrize("example", [pytest.param(e, id=e.id) for e in EXAMPLES])
def test_example(example: Example, tmp_path: Path) -> None:
    output, error = _run(example, tmp_path)
    where = f"docs/mappings.md:{example.line}"
    if example.kind == "output":
        assert error is None, f"{where}: expected output, got error:\n{error}"
        # what the hub publishes is JSON: a Decimal or a date left in the output would not be
        published = json.loads(json.dumps(output), parse_float=Decimal)
        expected = json.loads(example.expected, parse_float=Decimal)
        assert published == expected, f"{where}: output differs:\n{json.dumps(output)}"
    else:
        assert error is not None, f"{where}: expected an error, got {output!r}"
        for line in example.expected.strip().splitlines():
            assert line.strip() in error, f"{where}: {line.strip()!r} not in error:\n{error}"


@pytest.mark.parametrize("example", [pytest.param(e, id=e.id) for e in EXAMPLES])
def test_example_gives_the_same_on_both_paths(example: Example, tmp_path: Path) -> None:
    """The generated function and the closures agree (output, or both fail and the error is
    the closures'): see tests/mapping/test_fast_path.py."""
    try:
        mapping = _compile(example, tmp_path)
    except ConfigError:
        assert example.kind == "error"
        return
    payload = json.loads(example.input, parse_float=Decimal)
    assert paths_differ(mapping, payload, META, StubResolver({})) == ""


def _console(block: Block) -> list[tuple[str, str]]:
    """``$ hub ...`` commands of a console block, each with the output shown under it."""
    runs: list[tuple[str, list[str]]] = []
    for line in block.body.splitlines():
        if line.startswith("$ "):
            runs.append((line[2:], []))
        elif runs:
            runs[-1][1].append(line)
    return [(cmd, "\n".join(out).strip()) for cmd, out in runs]


def _check_console(
    block: Block, folder: Path, capsys: pytest.CaptureFixture[str], mp: pytest.MonkeyPatch
) -> None:
    from hub.cli import main

    mp.chdir(folder)
    for command, shown in _console(block):
        args = shlex.split(command)
        assert args[0] == "hub", f"docs/mappings.md:{block.line}: only hub commands can run"
        main(args[1:])
        captured = capsys.readouterr()
        actual = (captured.out + captured.err).strip()
        assert actual == shown, f"docs/mappings.md:{block.line}: $ {command} prints:\n{actual}"


@pytest.mark.parametrize("scenario", [pytest.param(s, id=s.id) for s in SCENARIOS])
def test_scenario(
    scenario: Scenario,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A test file passes (and its run prints what the page shows); a bad file is refused so."""
    where = f"docs/mappings.md:{scenario.line}"
    mappings = tmp_path / "mappings"
    if scenario.example is not None:
        _write_set(tmp_path, scenario.example)
    file = tmp_path / scenario.path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(scenario.body, encoding="utf-8")
    if scenario.kind == "test":
        results = run_file(load_mappings(mappings), file)
        assert results, f"{where}: no cases"
        failed = [f"{r.name}: {r.detail}" for r in results if not r.ok]
        assert not failed, f"{where}: " + "\n".join(failed)
    else:
        with pytest.raises(ConfigError):
            load_mappings(mappings)
    if scenario.console is not None:
        _check_console(scenario.console, tmp_path, capsys, monkeypatch)


def test_the_page_has_examples() -> None:
    assert len(EXAMPLES) >= 40
    assert any(e.kind == "error" for e in EXAMPLES)
    assert {s.kind for s in SCENARIOS} == {"test", "check"}


# -- the function table ------------------------------------------------------------------------

_ROW = re.compile(r"^\|\s*`(\w+)`\s*\|\s*`([^`]*)`\s*\|", re.M)


def _function_table() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## Function reference")
    end = text.find("\n## ", start + 1)
    return {m.group(1): m.group(2) for m in _ROW.finditer(text[start : end if end > 0 else None])}


def _arity(signature: str) -> tuple[int, int | None]:
    """``x, [places], [mode]`` -> (1, 3); ``x, ...`` -> (1, None)."""
    args = [a.strip() for a in signature.split(",") if a.strip()]
    if args and args[-1] == "...":
        return len(args) - 1, None
    return sum(1 for a in args if not a.startswith("[")), len(args)


def test_every_function_is_in_the_table() -> None:
    table = _function_table()
    assert sorted(set(FUNCTIONS) - set(table)) == [], "functions missing from the table"
    assert sorted(set(table) - set(FUNCTIONS)) == [], "the table lists unknown functions"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_table_arity(name: str) -> None:
    signature = _function_table().get(name)
    if signature is None:
        pytest.fail(f"{name} is not in the function table")
    fn = FUNCTIONS[name]
    # functions given the scope (lookup, golden_id) do not count it as an argument
    assert _arity(signature) == (fn.min_args, fn.max_args), f"{name}({signature})"
