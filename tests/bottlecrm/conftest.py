"""Tests against a real BottleCRM (tests/support/bottlecrm.py): all marked ``bottlecrm``, so
``pytest -m bottlecrm`` runs only them and ``-m "not bottlecrm"`` skips them."""

from __future__ import annotations

import pytest

from tests.support.bottlecrm import bottlecrm, bottlecrm_install  # noqa: F401  (fixtures)
from tests.support.tryton import tryton, tryton_install  # noqa: F401  (fixtures: CRM with ERP)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/bottlecrm/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.bottlecrm)
