"""Under the README's test command a missing tool fails the run instead of skipping."""

from __future__ import annotations

import pytest

from tests.unit.harness import ROOT

pytest_plugins = ["pytester"]

PROBE = """
import pytest

def test_needs_a_tool():
    pytest.skip("frobnicator is not installed")
"""


@pytest.mark.parametrize(("strict", "outcome"), [("1", {"failed": 1}), ("", {"skipped": 1})])
def test_missing_tool_fails_only_under_the_test_command(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, strict: str,
        outcome: dict[str, int]) -> None:
    monkeypatch.setenv("GIN_DEPLOY_STRICT_TOOLS", strict)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    pytester.makepyfile(test_probe=PROBE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(**outcome)
    if strict:
        result.stdout.fnmatch_lines(["*required tool missing: frobnicator is not installed*"])


def test_the_readme_test_command_is_strict() -> None:
    assert "export GIN_DEPLOY_STRICT_TOOLS=1" in (ROOT / "scripts" / "test").read_text()
