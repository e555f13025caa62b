"""Lookup tables shared through files under mappings/lookups/."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.errors import ConfigError
from hub.mapping import load_mappings
from hub.mdm import DeterministicResolver

MAPPING = """target: {format: example}
lookups:
  units: {file: lookups/units.yaml}
fields:
  unit: lookup('units', unit)
"""


def setup(tmp_path: Path, table: str, mapping: str = MAPPING) -> Path:
    (tmp_path / "lookups").mkdir()
    (tmp_path / "lookups" / "units.yaml").write_text(table)
    (tmp_path / "erp").mkdir()
    (tmp_path / "erp" / "item.yaml").write_text(mapping)
    return tmp_path


def apply(directory: Path, unit: str) -> object:
    m = load_mappings(directory).get("erp/item")
    assert m is not None
    return m.apply({"unit": unit}, {"connection": "erp"}, DeterministicResolver())


def test_a_shared_table_is_used_and_its_content_versions_the_mapping(tmp_path: Path) -> None:
    directory = setup(tmp_path, "values: {pcs: each, kg: kg}\n")
    assert load_mappings(directory).mappings.keys() == {"erp/item"}  # the table is no mapping
    assert apply(directory, "pcs") == {"unit": "each"}
    before = load_mappings(directory).get("erp/item").version  # type: ignore[union-attr]

    (directory / "lookups" / "units.yaml").write_text("values: {pcs: piece}\n")
    assert apply(directory, "pcs") == {"unit": "piece"}
    assert load_mappings(directory).get("erp/item").version != before  # type: ignore[union-attr]


def test_the_repo_units_table_loads() -> None:
    root = Path(__file__).resolve().parents[2] / "mappings"
    table = (root / "lookups" / "units.yaml").read_text()
    assert "pcs: each" in table
    assert "erp/item" not in load_mappings(root).mappings


@pytest.mark.parametrize(
    ("file", "message"),
    [
        ("lookups/missing.yaml", "cannot read lookup table lookups/missing.yaml"),
        ("../outside.yaml", "is outside the mappings folder"),
    ],
)
def test_bad_table_files_are_refused_with_the_line(tmp_path: Path, file: str, message: str) -> None:
    directory = setup(tmp_path, "values: {}\n", MAPPING.replace("lookups/units.yaml", file))
    with pytest.raises(ConfigError) as info:
        load_mappings(directory)
    assert message in str(info.value)
    assert "item.yaml:3 at lookups.units.file" in str(info.value)


def test_a_table_file_without_values_is_refused(tmp_path: Path) -> None:
    directory = setup(tmp_path, "pcs: each\n")
    with pytest.raises(ConfigError, match="must hold 'values"):
        load_mappings(directory)
