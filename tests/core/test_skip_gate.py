"""The test suite's own guards, run on tiny generated test files in a separate pytest.

The real ``tests/conftest.py`` and ``tests/helpers.py`` are copied beside each generated
file, so what runs is the gate CI uses: with ``CROSSRANK_STRICT_SKIPS=1`` a skip (other
than the allowlisted ones) fails the run and is listed at the end; ``need`` skips only
when a package is absent; real-model fixtures mark their tests ``model``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
GATE_TITLE = "CROSSRANK_STRICT_SKIPS=1: skipped tests fail this run"


def run_pytest(
    tmp_path: Path, files: dict[str, str], *args: str, strict: bool | str = True
) -> subprocess.CompletedProcess[str]:
    """pytest over ``files`` (name -> source) with the project's conftest and helpers;
    ``strict``: CROSSRANK_STRICT_SKIPS=1 (True), unset (False) or this value (a str)."""
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    shutil.copy(TESTS / "helpers.py", tmp_path / "helpers.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -rs\n")
    for name, source in files.items():
        (tmp_path / name).write_text(textwrap.dedent(source))
    env = {k: v for k, v in os.environ.items() if k != "CROSSRANK_STRICT_SKIPS"}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # the gate needs none; they cost seconds each
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "shared"), env.get("PYTHONPATH")]))
    if strict is not False:
        env["CROSSRANK_STRICT_SKIPS"] = "1" if strict is True else strict
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-c", "pytest.ini", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


SKIPPING = {
    "test_absent_module.py": """
        from helpers import need

        need("crossrank_absent_pkg_for_gate")  # module level: the whole module skips

        def test_never_runs():
            pass
    """,
    "test_mixed.py": """
        import pytest
        from helpers import need

        def test_passes():
            assert True

        def test_needs_absent_package():
            need("crossrank_other_absent_pkg", why="the gate test")

        def test_plain_skip():
            pytest.skip("no reason that the allowlist knows")

        @pytest.mark.xfail(reason="expected to fail", strict=True)
        def test_xfail_is_not_a_skip():
            assert False
    """,
}


def test_strict_run_with_skips_fails_and_lists_them(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, SKIPPING)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert GATE_TITLE in out
    assert "SKIPPED test_absent_module.py: not installed: crossrank_absent_pkg_for_gate" in out
    assert (
        "SKIPPED test_mixed.py::test_needs_absent_package: "
        "not installed: crossrank_other_absent_pkg (the gate test)" in out
    )
    assert "SKIPPED test_mixed.py::test_plain_skip: no reason that the allowlist knows" in out
    assert "3 test(s) skipped with CROSSRANK_STRICT_SKIPS=1" in out
    assert "test_xfail_is_not_a_skip" not in out.split(GATE_TITLE)[1]
    # The gate's list comes last, after pytest's own summary of skip reasons (-rs).
    assert out.index("short test summary info") < out.index(GATE_TITLE)


def test_without_the_variable_skips_pass_and_print_their_reasons(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, SKIPPING, strict=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert GATE_TITLE not in out
    assert "not installed: crossrank_other_absent_pkg (the gate test)" in out  # -rs
    assert "1 passed, 3 skipped, 1 xfailed" in out


def test_only_allowlisted_skips_pass_the_strict_run(tmp_path: Path) -> None:
    files = {
        "test_data.py": """
            import pytest
            from conftest import SHARED_DATA_ABSENT

            def test_needs_data():
                pytest.skip(SHARED_DATA_ABSENT)

            def test_runs():
                pass
        """
    }
    done = run_pytest(tmp_path, files)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert GATE_TITLE not in out
    assert "allowed skips" in out and "../shared/data is not present" in out


def test_a_failing_run_with_skips_stays_failed(tmp_path: Path) -> None:
    files = {
        "test_fail.py": """
            from helpers import need

            def test_fails():
                assert False

            def test_skips():
                need("crossrank_absent_pkg_for_gate")
        """
    }
    done = run_pytest(tmp_path, files)
    assert done.returncode == 1
    assert GATE_TITLE in done.stdout and "1 failed, 1 skipped" in done.stdout


def test_strict_run_with_nothing_skipped_passes(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, {"test_ok.py": "def test_ok():\n    pass\n"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert GATE_TITLE not in done.stdout and "allowed skips" not in done.stdout


def test_an_installed_package_that_fails_to_import_fails_instead_of_skipping(
    tmp_path: Path,
) -> None:
    """The issue-11 failure: FlagEmbedding installed, its import broken by transformers."""
    pkg = tmp_path / "crossrank_broken_pkg_for_gate"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'transformers.modeling_attn_mask_utils'\","
        " name='transformers.modeling_attn_mask_utils')\n"
    )
    files = {
        "test_module_level.py": """
            from helpers import need

            need("crossrank_broken_pkg_for_gate")

            def test_never_collected():
                pass
        """,
        "test_in_test.py": """
            from helpers import need

            def test_uses_it():
                need("crossrank_broken_pkg_for_gate")
        """,
    }
    for strict in (True, False):  # a broken package fails with or without the gate
        done = run_pytest(tmp_path, files, "--continue-on-collection-errors", strict=strict)
        out = done.stdout
        assert done.returncode != 0, out
        counts = out.strip().splitlines()[-1]
        assert "skipped" not in counts and "1 failed, 1 error" in counts, counts  # test, module
        assert "BrokenPackageError" in out
        assert "crossrank_broken_pkg_for_gate (unknown version) is installed but fails" in out
        assert "transformers.modeling_attn_mask_utils" in out


def test_real_model_fixtures_mark_their_tests_model(tmp_path: Path) -> None:
    files = {
        "test_marks.py": """
            import pytest

            @pytest.fixture
            def wraps_a_model(minilm_reranker_backend):
                return minilm_reranker_backend

            def test_direct(minilm_path):
                pass

            def test_through_another_fixture(wraps_a_model):
                pass

            def test_fast(keyword_backend):
                pass
        """
    }
    done = run_pytest(tmp_path, files, "--collect-only", "-q", "-m", "not model", strict=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "test_marks.py::test_fast" in out
    assert "test_direct" not in out and "test_through_another_fixture" not in out
    assert "1/3 tests collected (2 deselected)" in out


def test_the_project_declares_its_markers_strictly() -> None:
    """--strict-markers, -rs, and the three markers are in pyproject's pytest section."""
    import tomllib

    ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in ini["addopts"] and "-rs" in ini["addopts"]
    declared = {m.split(":", 1)[0] for m in ini["markers"]}
    assert {"model", "data", "smoke"} <= declared


@pytest.mark.parametrize("value", ["0", ""])
def test_gate_is_off_unless_set(tmp_path: Path, value: str) -> None:
    files = {"test_s.py": "import pytest\n\ndef test_s():\n    pytest.skip('x')\n"}
    done = run_pytest(tmp_path, files, strict=value)
    assert done.returncode == 0, done.stdout + done.stderr
    assert GATE_TITLE not in done.stdout


def test_no_test_uses_importorskip() -> None:
    """``pytest.importorskip`` also skips when an installed package fails to import (how
    the dead BGE backend stayed green); tests use ``helpers.need`` instead."""
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != "helpers.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "importorskip(" in line and path != Path(__file__)
    ]
    assert not offenders, f"use helpers.need(...) instead of pytest.importorskip: {offenders}"
