"""The CI skip rule (tests/conftest.py): with ATACDENOISE_CI set, a skip fails the run unless the test is marked gpu.

Each test runs a small suite in a fresh directory (pytest's ``pytester``) under
a copy of the real ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py").read_text()

SUITE = """
import pytest


@pytest.fixture
def tool():
    pytest.skip("no such tool on PATH")


def test_passes():
    assert True


def test_skips_in_body():
    pytest.skip("input file missing")


@pytest.mark.skipif(True, reason="macs3 not installed")
def test_skipif_marker():
    pass


def test_skips_in_fixture(tool):
    pass


@pytest.mark.gpu
@pytest.mark.skipif(True, reason="needs a CUDA device")
def test_gpu_only():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    gpu: needs a CUDA device\n")
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def test_without_ci_skips_stay_skips(suite, monkeypatch):
    monkeypatch.delenv("ATACDENOISE_CI", raising=False)
    result = suite.runpytest("-ra")
    result.assert_outcomes(passed=1, skipped=4)
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.parametrize("value", ["0", "off", ""])
def test_a_ci_variable_that_says_no_is_not_ci(suite, monkeypatch, value):
    monkeypatch.setenv("ATACDENOISE_CI", value)
    suite.runpytest().assert_outcomes(passed=1, skipped=4)


def test_in_ci_every_skip_but_gpu_fails_with_its_reason(suite, monkeypatch):
    monkeypatch.setenv("ATACDENOISE_CI", "1")
    result = suite.runpytest("-ra")
    # skips in the test body fail; skips while setting up (markers, fixtures) are setup errors
    result.assert_outcomes(passed=1, failed=1, errors=2, skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    for reason in ("input file missing", "macs3 not installed", "no such tool on PATH"):
        assert f"skipped in CI (ATACDENOISE_CI is set; only tests marked gpu may skip): {reason}" in out
    result.stdout.fnmatch_lines(["*ATACDENOISE_CI is set: every skip fails*", "SKIPPED*needs a CUDA device"])


def test_in_ci_a_skip_while_collecting_fails(pytester, monkeypatch):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_importorskip="import pytest\npytest.importorskip('no_such_module_xyz')\n\ndef test_never():\n    pass\n",
        test_module_skip="import pytest\npytest.skip('data missing', allow_module_level=True)\n",
        test_fine="def test_fine():\n    pass\n",
    )
    monkeypatch.delenv("ATACDENOISE_CI", raising=False)
    pytester.runpytest().assert_outcomes(passed=1, skipped=2)
    monkeypatch.setenv("ATACDENOISE_CI", "1")
    result = pytester.runpytest()
    result.assert_outcomes(errors=2)
    assert result.ret == pytest.ExitCode.INTERRUPTED  # collection errors stop the run before any test
    result.stdout.fnmatch_lines(
        ["*skipped in CI*could not import 'no_such_module_xyz'*test_importorskip.py*", "*skipped in CI*data missing*"]
    )
