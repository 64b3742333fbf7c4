"""The fidelity guard: figures, the bar, the verdict's cache, and the real path on a model."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
from helpers import need
from rerank_core.backends.runtime import fidelity, guard
from rerank_core.backends.runtime.cpu import CpuInfo
from rerank_core.backends.runtime.onnx_export import VARIANTS, QuantVariant
from rerank_core.backends.runtime.probe import load_probe

# ------------------------------------------------------------------ figures


def test_kendall_tau_known_values() -> None:
    assert fidelity.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert fidelity.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # one swapped neighbour pair of 6 pairs: (5 - 1) / 6
    assert fidelity.kendall_tau([1, 2, 3, 4], [2, 1, 3, 4]) == pytest.approx(4 / 6)
    with pytest.raises(ValueError):
        fidelity.kendall_tau([1, 2], [1])


def test_top_overlap() -> None:
    ref = [5.0, 4.0, 3.0, 2.0, 1.0]
    assert fidelity.top_overlap(ref, ref, 3) == 1.0
    assert fidelity.top_overlap(ref, [1.0, 4.0, 3.0, 2.0, 5.0], 3) == pytest.approx(2 / 3)


def _groups(n: int, size: int) -> list[slice]:
    return [slice(i * size, (i + 1) * size) for i in range(n)]


def test_compare_identical_scores_is_perfect() -> None:
    ref = [float(i % 12) for i in range(48)] + [0.5, 1.5, 2.5]
    f = fidelity.compare(ref, ref, _groups(4, 12), slice(48, 51))
    assert (f.tau_mean, f.top3_overlap, f.top1_agreement) == (1.0, 1.0, 1.0)
    assert f.rel_err_max == 0.0 and f.long_rel_err_max == 0.0
    assert not fidelity.DEFAULT_BAR.failures(f)


def test_compare_error_is_relative_to_the_spread() -> None:
    ref = [float(i) for i in range(12)]
    shifted = [s + 0.01 * (-1) ** i for i, s in enumerate(ref)]
    f = fidelity.compare(ref, shifted, _groups(1, 12))
    # sd of 0..11 is about 3.45: an error of 0.01 is about 0.003 of it
    assert f.rel_err_max == pytest.approx(0.01 / 3.452, rel=1e-3)
    assert f.tau_mean == 1.0


def test_bar_names_each_failure() -> None:
    ref = [float(i) for i in range(12)]
    noisy = list(reversed(ref))
    f = fidelity.compare(ref, noisy, _groups(1, 12))
    fails = fidelity.DEFAULT_BAR.failures(f)
    assert any("tau" in x for x in fails) and any("top-3" in x for x in fails)
    assert any("error/spread" in x for x in fails)


# ------------------------------------------------------------------ the guard's decision


def _fake_world(
    tmp_path: Path, error_by_variant: dict[str, float]
) -> tuple[dict[str, int], guard.Scorer, object, object]:
    """A reference scorer and per-variant scorers whose error is ``error_by_variant``
    (as a share of each group's spread), counting calls."""
    calls = {"reference": 0, "quantize": 0}

    def reference(pairs: Sequence[tuple[str, str]]) -> list[float]:
        calls["reference"] += 1
        return [float(i % 12) for i in range(len(pairs))]

    def quantize(v: QuantVariant) -> Path:
        calls["quantize"] += 1
        p = tmp_path / f"model.{v.name}.onnx"
        p.write_text("x")
        return p

    def scorer_for(path: Path) -> guard.Scorer:
        name = path.name.removeprefix("model.").removesuffix(".onnx")
        err = error_by_variant[name] * 3.452  # sd of 0..11

        def score(pairs: Sequence[tuple[str, str]]) -> list[float]:
            return [float(i % 12) + err * (-1) ** i for i in range(len(pairs))]

        return score

    return calls, reference, quantize, scorer_for


CPU = CpuInfo(model="test", flags=frozenset({"avx2", "fma"}), cores=2)


def test_guard_takes_the_first_variant_that_passes_and_caches_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    errors = {v.name: 0.5 for v in VARIANTS}
    errors["int8-ffn32"] = 0.001
    calls, reference, quantize, scorer_for = _fake_world(tmp_path, errors)
    with caplog.at_level(logging.INFO, logger="crossrank"):
        v = guard.choose_variant(
            tmp_path, reference=reference, quantize=quantize, scorer_for=scorer_for, info=CPU
        )
    assert v.variant == "int8-ffn32"
    assert [t["variant"] for t in v.tried] == ["int8", "int8-ffn32"]
    assert v.tried[0]["failures"] and not v.tried[1]["failures"]
    # failed variants are deleted, the chosen one kept
    assert not (tmp_path / "model.int8.onnx").exists()
    assert (tmp_path / "model.int8-ffn32.onnx").exists()
    assert "int8-ffn32" in caplog.text
    saved = json.loads((tmp_path / f"guard.{guard.cpu_key(CPU)}.json").read_text())
    assert saved["variant"] == "int8-ffn32" and saved["bar"] == fidelity.DEFAULT_BAR.as_dict()
    # the second load reads the verdict: no scoring at all
    before = dict(calls)
    again = guard.choose_variant(
        tmp_path, reference=reference, quantize=quantize, scorer_for=scorer_for, info=CPU
    )
    assert again == v and calls == before


def test_guard_falls_back_to_fp32_naming_every_failure(tmp_path: Path) -> None:
    _, reference, quantize, scorer_for = _fake_world(tmp_path, {v.name: 0.5 for v in VARIANTS})
    v = guard.choose_variant(
        tmp_path, reference=reference, quantize=quantize, scorer_for=scorer_for, info=CPU
    )
    assert v.variant is None
    assert "fp32" in v.reason and all(x.name in v.reason for x in VARIANTS)
    assert not list(tmp_path.glob("model.int8*.onnx"))


def test_a_variant_that_cannot_run_is_passed_over(tmp_path: Path) -> None:
    errors = {v.name: 0.0 for v in VARIANTS}
    _, reference, quantize, scorer_for = _fake_world(tmp_path, errors)

    def broken_first(path: Path) -> guard.Scorer:
        if path.name == "model.int8.onnx":
            raise RuntimeError("no kernel for this op")
        return scorer_for(path)

    v = guard.choose_variant(
        tmp_path, reference=reference, quantize=quantize, scorer_for=broken_first, info=CPU
    )
    assert v.variant == "int8-ffn32"
    assert v.tried[0]["figures"] is None and "no kernel" in v.tried[0]["failures"][0]
    assert not (tmp_path / "model.int8.onnx").exists()


def test_guard_verdict_depends_on_cpu_features(tmp_path: Path) -> None:
    vnni = CpuInfo(model="other name", flags=frozenset({"avx2", "avx512_vnni"}), cores=64)
    same = CpuInfo(model="another name", flags=frozenset({"avx2", "fma", "sse4_2"}), cores=8)
    assert guard.cpu_key(CPU) != guard.cpu_key(vnni)
    assert guard.cpu_key(CPU) == guard.cpu_key(same)  # the model name and cores do not matter


def test_a_stale_or_corrupt_verdict_is_measured_again(tmp_path: Path) -> None:
    calls, reference, quantize, scorer_for = _fake_world(tmp_path, {v.name: 0.0 for v in VARIANTS})
    f = tmp_path / f"guard.{guard.cpu_key(CPU)}.json"
    f.write_text("{not json")
    v = guard.choose_variant(
        tmp_path, reference=reference, quantize=quantize, scorer_for=scorer_for, info=CPU
    )
    assert v.variant == "int8" and calls["reference"] == 1
    d = json.loads(f.read_text())
    d["version"] = -1
    f.write_text(json.dumps(d))
    guard.choose_variant(
        tmp_path, reference=reference, quantize=quantize, scorer_for=scorer_for, info=CPU
    )
    assert calls["reference"] == 2


def test_the_probe_has_groups_and_long_pairs() -> None:
    probe = load_probe()
    pairs, groups = probe.pairs(), probe.group_slices()
    assert len(groups) >= 20 and groups[-1].stop < len(pairs)
    assert all(g.stop - g.start >= 8 for g in groups)


# ------------------------------------------------------------------ the real path

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "crossrank-minilm-l6"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    """The trained bundled model loaded with ``precision="auto"`` into an empty export cache:
    the guard measures it (once for the module)."""
    need("sentence_transformers")
    need("onnxruntime")
    from rerank_core.backends.cross_encoder import CrossEncoderBackend

    cache = tmp_path_factory.mktemp("guard-cache")
    return CrossEncoderBackend(str(BUNDLED), onnx_cache_dir=cache, num_threads=2), cache


def test_auto_runs_the_guard_and_shows_its_verdict(guarded: tuple[object, Path]) -> None:
    backend, cache = guarded
    d = backend.describe()  # type: ignore[attr-defined]
    fid = d["fidelity"]
    assert fid is not None and fid["tried"], d
    assert fid["bar"] == fidelity.DEFAULT_BAR.as_dict()
    assert d["int8_variant"] == fid["variant"]
    if fid["variant"] is None:
        assert (d["runtime"], d["precision"]) == ("onnx", "fp32")
        assert all(t["failures"] for t in fid["tried"])
    else:
        assert (d["runtime"], d["precision"]) == ("onnx", "int8")
        assert not fid["tried"][-1]["failures"]
        assert Path(d["onnx_model_path"]).name == f"model.{fid['variant']}.onnx"
    assert d["reason"] == fid["reason"]
    assert "fidelity guard" in repr(backend)
    assert fid["variant"] in str(d["fingerprint"]) or fid["variant"] is None
    saved = list(cache.glob("onnx/*/guard.*.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["variant"] == fid["variant"]


def test_the_verdict_is_reused_not_measured_again(
    guarded: tuple[object, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rerank_core.backends.cross_encoder import CrossEncoderBackend

    backend, cache = guarded

    def no_measuring(*args: object, **kwargs: object) -> guard.Verdict:
        raise AssertionError("the guard measured again")

    monkeypatch.setattr(guard, "_measure", no_measuring)
    again = CrossEncoderBackend(str(BUNDLED), onnx_cache_dir=cache, num_threads=1)
    assert again.describe()["fidelity"] == backend.describe()["fidelity"]  # type: ignore[attr-defined]
    assert again.fingerprint == backend.fingerprint  # type: ignore[attr-defined]


def test_int8_by_name_skips_the_guard(guarded: tuple[object, Path]) -> None:
    from rerank_core.backends.cross_encoder import CrossEncoderBackend

    _, cache = guarded
    forced = CrossEncoderBackend(str(BUNDLED), precision="int8", onnx_cache_dir=cache)
    d = forced.describe()
    assert (d["precision"], d["int8_variant"], d["fidelity"]) == ("int8", "int8", None)
    assert Path(d["onnx_model_path"]).name == "model.int8.onnx"


def test_bge_auto_is_guarded_too(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    need("onnxruntime")
    need("transformers")
    from _tiny_models import tiny_xlmr_once
    from rerank_core.backends.flag import FlagRerankerBackend

    b = FlagRerankerBackend(str(tiny_xlmr_once(tmp_path_factory)), onnx_cache_dir=tmp_path)
    d = b.describe()
    assert d["fidelity"] is not None and d["runtime"] == "onnx"
    assert d["precision"] == ("int8" if d["fidelity"]["variant"] else "fp32")
