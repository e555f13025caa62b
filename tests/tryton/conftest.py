"""Tests against a real Tryton (tests/support/tryton.py): all marked ``tryton``, so
``pytest -m tryton`` runs only them and ``-m "not tryton"`` skips them."""

from __future__ import annotations

import pytest

from tests.support.tryton import tryton, tryton_install  # noqa: F401  (fixtures)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/tryton/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.tryton)
