"""Every registered learner against every contract check (river's ``yield_checks`` pattern)."""

from __future__ import annotations

from typing import Any

import pytest

from wirelearn.models._checks import Check, yield_checks
from wirelearn.models._registry import _unit_test_params, make_model


def _cases() -> list[Any]:
    cases = []
    for name, params in _unit_test_params():
        model = make_model(name, **params)
        short = ",".join(f"{k}={v}" for k, v in params.items()) or "defaults"
        for check in yield_checks(model):
            cases.append(pytest.param(name, params, check, id=f"{name}[{short}]-{check.__name__}"))
    return cases


@pytest.mark.parametrize(("name", "params", "check"), _cases())
def test_contract(name: str, params: dict[str, Any], check: Check) -> None:
    check(make_model(name, **params))
