"""Honest dependency errors from the local backends, with real packages made absent or
broken: "not installed" (MissingDependencyError) only when a package is absent; an
installed package that fails to import is a BrokenDependencyError showing why; each names
the extra that installs it (sentence-transformers: ``minilm``; transformers for BGE:
``bge``; onnxruntime, also on the BGE path: ``fast``).

A broken package is a fake one placed first on ``sys.path`` of a child process, raising at
import what the real break raised (FlagEmbedding 1.4.2 under transformers 5.24:
``ModuleNotFoundError`` for ``transformers.modeling_attn_mask_utils``). An absent package
is hidden with ``sys.modules[name] = None``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _tiny_models import tiny_xlmr_once
from helpers import need
from rerank_core import BrokenDependencyError, MissingDependencyError, Reranker

need("torch")
need("sentence_transformers")
need("transformers")
need("onnxruntime")

pytestmark = pytest.mark.model

ATTN_UTILS = (
    "raise ModuleNotFoundError(\"No module named 'transformers.modeling_attn_mask_utils'\", "
    "name='transformers.modeling_attn_mask_utils')\n"
)
BROKEN = {
    # what `import FlagEmbedding` 1.4.2 raises under transformers 5.24
    "FlagEmbedding": ATTN_UTILS,
    "sentence_transformers": ATTN_UTILS,
    "transformers": (
        "raise ModuleNotFoundError(\"No module named 'huggingface_hub.dataclasses'\", "
        "name='huggingface_hub.dataclasses')\n"
    ),
    "onnxruntime": "raise ImportError('libonnxruntime.so.1: cannot open shared object file')\n",
}

CHILD = r"""
import json, logging, sys
from rerank_core import Reranker
warned = []
class Keep(logging.Handler):
    def emit(self, record):
        warned.append(record.getMessage())
logging.getLogger("crossrank").addHandler(Keep())
out = {}
for label, name, options in json.loads(sys.argv[1]):
    try:
        rr = Reranker(name, cache=None, **options)
        d = rr.backend.describe()
        out[label] = {"ok": True, "runtime": d["runtime"], "precision": d["precision"],
                      "scores": rr.score("what causes scurvy", ["lack of vitamin C", "Paris"])}
    except Exception as exc:
        out[label] = {"ok": False, "type": type(exc).__name__, "extra": getattr(exc, "extra", None),
                      "package": getattr(exc, "package", None), "message": str(exc)}
out["warnings"] = warned
print("RESULT " + json.dumps(out))
"""


def run_child(broken: str, tmp_path: Path, cases: list[tuple[str, str, dict[str, Any]]]) -> Any:
    """Run ``cases`` (label, preset, options) in a child process where ``broken`` is
    installed but fails to import."""
    fake = tmp_path / "broken" / broken
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(BROKEN[broken])
    env = dict(os.environ, HF_HUB_OFFLINE="1", CROSSRANK_CACHE_DIR=str(tmp_path / "cache"))
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "broken"), env.get("PYTHONPATH", "")])
    res = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    lines = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
    assert res.returncode == 0 and lines, res.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def assert_broken(got: dict[str, Any], *, extra: str, package: str, cause: str) -> None:
    assert not got["ok"] and got["type"] == "BrokenDependencyError", got
    assert got["extra"] == extra and got["package"] == package, got
    assert "not installed" not in got["message"] and "fails to import" in got["message"]
    assert cause in got["message"], got["message"]
    assert f"crossrank[{extra}]" in got["message"]


@pytest.fixture(scope="module")
def xlmr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_xlmr_once(tmp_path_factory)


def test_bge_works_with_a_broken_flagembedding(xlmr_dir: Path, tmp_path: Path) -> None:
    """The break that killed the BGE backend (FlagEmbedding 1.4.2 under transformers 5.24)
    no longer reaches it: BGE models load with transformers alone."""
    got = run_child(
        "FlagEmbedding",
        tmp_path,
        [
            ("default", "bge", {"model": str(xlmr_dir)}),
            ("torch", "bge", {"model": str(xlmr_dir), "runtime": "torch"}),
        ],
    )
    assert got["default"]["ok"] and got["torch"]["ok"], got
    assert (got["default"]["runtime"], got["torch"]["runtime"]) == ("onnx", "torch")
    here = Reranker("bge", model=str(xlmr_dir), runtime="torch", cache=None)
    want = here.score("what causes scurvy", ["lack of vitamin C", "Paris"])
    assert got["torch"]["scores"] == pytest.approx(want, abs=1e-5)
    assert got["default"]["scores"] == pytest.approx(want, abs=1e-4)


def test_a_broken_transformers_is_named_not_called_missing(
    xlmr_dir: Path, minilm_path: Path, tmp_path: Path
) -> None:
    got = run_child(
        "transformers",
        tmp_path,
        [
            ("bge", "bge", {"model": str(xlmr_dir)}),
            ("minilm", "minilm", {"model": str(minilm_path)}),
        ],
    )
    assert_broken(
        got["bge"], extra="bge", package="transformers", cause="huggingface_hub.dataclasses"
    )
    # sentence-transformers imports transformers: it is the one that fails to import
    assert_broken(
        got["minilm"],
        extra="minilm",
        package="sentence-transformers",
        cause="huggingface_hub.dataclasses",
    )


def test_a_broken_sentence_transformers(minilm_path: Path, tmp_path: Path) -> None:
    got = run_child(
        "sentence_transformers", tmp_path, [("m", "minilm", {"model": str(minilm_path)})]
    )
    assert_broken(
        got["m"],
        extra="minilm",
        package="sentence-transformers",
        cause="transformers.modeling_attn_mask_utils",
    )


def test_a_broken_onnxruntime(minilm_path: Path, xlmr_dir: Path, tmp_path: Path) -> None:
    """Asked for by name (int8, runtime="onnx"): the error; by default: torch, with a
    warning that says why."""
    got = run_child(
        "onnxruntime",
        tmp_path,
        [
            ("int8", "minilm", {"model": str(minilm_path), "precision": "int8"}),
            ("bge-onnx", "bge", {"model": str(xlmr_dir), "runtime": "onnx"}),
            ("exact", "minilm", {"model": str(minilm_path), "precision": "exact"}),
            ("bge", "bge", {"model": str(xlmr_dir)}),
        ],
    )
    for label in ("int8", "bge-onnx"):
        assert_broken(got[label], extra="fast", package="onnxruntime", cause="libonnxruntime")
    assert (got["exact"]["runtime"], got["exact"]["precision"]) == ("torch", "fp32")
    assert (got["bge"]["runtime"], got["bge"]["precision"]) == ("torch", "fp32")
    assert len(got["warnings"]) == 2
    assert all("fails to import" in w and "torch" in w for w in got["warnings"])


def test_absent_packages_are_missing_with_the_right_extra(
    minilm_path: Path, xlmr_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "sentence_transformers", None)
        with pytest.raises(MissingDependencyError, match="not installed") as info:
            Reranker("minilm", model=str(minilm_path))
        assert (info.value.extra, info.value.package) == ("minilm", "sentence-transformers")
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "transformers", None)
        with pytest.raises(MissingDependencyError, match="not installed") as info:
            Reranker("bge", model=str(xlmr_dir))
        assert info.value.extra == "bge"
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "onnxruntime", None)
        for preset, options in (
            ("bge", {"runtime": "onnx"}),
            ("bge", {"precision": "int8"}),
            ("minilm", {"precision": "int8"}),
        ):
            model = str(xlmr_dir if preset == "bge" else minilm_path)
            with pytest.raises(MissingDependencyError, match=r"crossrank\[fast\]") as info:
                Reranker(preset, model=model, **options)
            assert info.value.extra == "fast" and "not installed" in str(info.value)
            assert not isinstance(info.value, BrokenDependencyError)
