"""A pytest plugin: a test's captured output and log reach the report as text that encodes.

A test of hostile input may log an exception naming a file whose name is not UTF-8 (a
surrogate such as ``\\udcff``); the product's own stderr writes it escaped, but pytest-xdist
sends each report from its worker as UTF-8 and stops the whole run on such a section
("INTERNALERROR ... strings must be utf-8 encodable"), though the test passed. Sections are
rewritten with the surrogates escaped, as stderr shows them."""

from __future__ import annotations

from collections.abc import Generator

import pytest


def _encodable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    report.sections = [(title, _encodable(text)) for title, text in report.sections]
