"""Every YAML test case under mappings/tests is one pytest case (id: mapping:name)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import yaml

from hub.mapping.testing import CaseResult, diff, run_tests
from hub.mapping.testing import case_files as find_test_files

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


def _cases() -> list[pytest.ParameterSet]:
    params = []
    for file in find_test_files(MAPPINGS / "tests"):
        doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        mapping = str(doc.get("mapping", ""))
        for i, case in enumerate(doc.get("cases") or []):
            name = str(case.get("name") or f"case {i + 1}")
            params.append(pytest.param(file, i, id=f"{mapping}:{name}"))
    return params


@cache
def _results() -> dict[Path, list[CaseResult]]:
    by_file: dict[Path, list[CaseResult]] = {}
    for result in run_tests(MAPPINGS):
        by_file.setdefault(result.file, []).append(result)
    return by_file


CASES = _cases()


def test_there_are_mapping_cases() -> None:
    assert len(CASES) >= 5


@pytest.mark.parametrize(("file", "index"), CASES)
def test_mapping_case(file: Path, index: int) -> None:
    results = _results()[file]
    if len(results) == 1 and results[0].name == "(file)":
        pytest.fail(f"{file}: {results[0].detail}")
    result = results[index]
    assert result.ok, f"{result.mapping}: {result.name}\n{result.detail}"


def test_a_wrong_expectation_gives_a_readable_diff(tmp_path: Path) -> None:
    case_file = tmp_path / "address.yaml"
    case_file.write_text(
        "mapping: shopify/address\n"
        "cases:\n"
        "  - name: right\n"
        "    input: {first_name: Ann, last_name: Lee, country_code: de}\n"
        "    expect: {name: Ann Lee, country: DE}\n"
        "  - name: wrong\n"
        "    input: {first_name: Ann, last_name: Lee, country_code: de, zip: '10115'}\n"
        "    expect: {name: Ann Lee, country: FR, city: Berlin}\n"
    )
    right, wrong = run_tests(MAPPINGS, case_file)
    assert (right.name, right.ok, right.detail) == ("right", True, "")
    assert (wrong.mapping, wrong.name, wrong.ok) == ("shopify/address", "wrong", False)
    lines = wrong.detail.splitlines()
    assert lines[:2] == ["--- expected", "+++ actual"]
    assert '-  "city": "Berlin",' in lines
    assert '-  "country": "FR",' in lines
    assert '+  "country": "DE",' in lines
    assert '+  "postal_code": "10115"' in lines
    # unchanged lines are shown as context, not as changes
    assert lines[3] == " {"
    assert lines[-1] == " }"


def test_other_failure_kinds_are_explained(tmp_path: Path) -> None:
    case_file = tmp_path / "cases.yaml"
    case_file.write_text(
        "mapping: shopify/address\n"
        "cases:\n"
        "  - name: expected an error\n"
        "    input: {city: X}\n"
        "    expect_error: boom\n"
        "  - name: no expectation\n"
        "    input: {city: X}\n"
        "  - name: subset\n"
        "    input: {city: X, country_code: de}\n"
        "    expect_subset: {country: DE}\n"
        "  - name: bad input file\n"
        "    input_file: absent.json\n"
        "    expect: {}\n"
    )
    results = run_tests(MAPPINGS, case_file)
    assert [(r.name, r.ok) for r in results] == [
        ("expected an error", False),
        ("no expectation", False),
        ("subset", True),
        ("bad input file", False),
    ]
    assert results[0].detail == "expected an error containing 'boom', got output"
    assert "needs expect, expect_subset, expect_error or expect_dropped" in results[1].detail
    assert results[3].detail.startswith("cannot read input:")


def test_unknown_mapping_in_a_test_file(tmp_path: Path) -> None:
    case_file = tmp_path / "cases.yaml"
    case_file.write_text("mapping: shopify/nope\ncases: [{name: x, input: {}, expect: {}}]\n")
    [result] = run_tests(MAPPINGS, case_file)
    assert not result.ok
    assert result.detail == "unknown mapping 'shopify/nope'"


def test_diff_of_equal_values_is_empty() -> None:
    assert diff({"a": 1}, {"a": 1}) == ""
