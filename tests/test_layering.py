"""The parts of the hub see it through the narrow views of hub.ports, never the Hub class."""

import ast
from pathlib import Path

import hub

HUB = Path(hub.__file__).parent
KNOW_THE_HUB = {"runtime.py", "cli.py"}  # they build it and run it


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, as absolute names (also under TYPE_CHECKING)."""
    package = ["hub", *path.relative_to(HUB).parent.parts]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            names.add(".".join([*base, *([node.module] if node.module else [])]))
    return names


def test_only_runtime_and_cli_import_the_hub_class() -> None:
    offenders = sorted(
        str(path.relative_to(HUB))
        for path in HUB.rglob("*.py")
        if path.name not in KNOW_THE_HUB or path.parent != HUB
        if "hub.runtime" in imports_of(path)
    )
    assert offenders == [], f"import the views of hub.ports instead: {offenders}"


def test_the_check_sees_relative_imports() -> None:
    # the check itself: hub/cli.py imports the runtime relatively (from .runtime import Hub)
    assert "hub.runtime" in imports_of(HUB / "cli.py")
