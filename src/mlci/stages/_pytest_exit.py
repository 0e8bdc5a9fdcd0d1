"""A pytest plugin the unit-test stage loads (`-p mlci.stages._pytest_exit`): the tests' process ends
without the cycle collector's passes over the project's imports at teardown (pandas and
scikit-learn: about 0.5 s of every run). It runs last, after the JUnit XML and the coverage
report are written; see mlci.cli.exit_without_collecting for why freezing is safe at exit."""

from __future__ import annotations

import gc

import pytest


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    gc.freeze()
