"""tests/support/needs.py, the one rule for what the machine lacks: skip on a laptop, fail
when CI is set."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import needs


@pytest.fixture(params=["laptop", "ci"])
def where(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> type[BaseException]:
    """Runs the test without and with CI set; gives the outcome a missing need has there."""
    if request.param == "ci":
        monkeypatch.setenv("CI", "true")
        return pytest.fail.Exception
    monkeypatch.delenv("CI", raising=False)
    return pytest.skip.Exception


def test_missing_skips_on_a_laptop_and_fails_under_ci(where: type[BaseException]) -> None:
    with pytest.raises(where, match="no such thing"):
        needs.missing("no such thing")


def test_an_absent_program_is_missing(where: type[BaseException]) -> None:
    with pytest.raises(where, match="hubbub-no-such-tool is not installed"):
        needs.executable("hubbub-no-such-tool", "a hint")


def test_a_program_is_found_on_path_or_in_the_extra_path(tmp_path: Path) -> None:
    tool = tmp_path / "hubbub-test-tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert needs.executable("sh").endswith("/sh")
    assert needs.executable("hubbub-test-tool", extra_path=str(tmp_path)) == str(tool)


def test_absent_python_packages_are_missing(where: type[BaseException]) -> None:
    needs.modules("json", "pytest", hint="always there")
    with pytest.raises(where, match="hubbub_no_such_package"):
        needs.modules("json", "hubbub_no_such_package", hint="a hint")
