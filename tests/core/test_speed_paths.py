"""The fast CPU paths of the MiniLM backend, on the real model: runtime selection, ONNX
export cache, exact-mode equality with CrossEncoder.predict, int8 fidelity and batch
invariance, fallbacks, thread hygiene, concurrency; and a smoke run of ``crossrank bench``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import need
from rerank_core import ConfigError, MissingDependencyError, ModelLoadError, Reranker
from rerank_core.backends.cross_encoder import FAMILY
from rerank_core.backends.runtime import CpuInfo, cpu, onnx_export, plan_speed

ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------- plan (no model)

VNNI = CpuInfo("x", frozenset({"avx2", "avx512_vnni", "avx512_bf16"}), 8)
BF16_ONLY = CpuInfo("x", frozenset({"avx2", "amx_bf16"}), 8)
PLAIN = CpuInfo("x", frozenset({"avx2"}), 8)


@pytest.mark.parametrize(
    ("info", "have_onnx", "precision", "runtime", "want"),
    [
        (VNNI, True, "auto", "auto", ("onnx", "int8")),
        (VNNI, False, "auto", "auto", ("torch", "bf16")),
        # int8 is a candidate on every CPU: the fidelity guard confirms it or takes fp32
        (BF16_ONLY, True, "auto", "auto", ("onnx", "int8")),
        (PLAIN, True, "auto", "auto", ("onnx", "int8")),
        (PLAIN, False, "auto", "auto", ("torch", "fp32")),
        (VNNI, True, "auto", "torch", ("torch", "bf16")),
        (PLAIN, True, "auto", "torch", ("torch", "fp32")),
        (PLAIN, True, "auto", "onnx", ("onnx", "int8")),
        (VNNI, True, "exact", "auto", ("onnx", "fp32")),
        (VNNI, False, "exact", "auto", ("torch", "fp32")),
        (VNNI, True, "fp32", "torch", ("torch", "fp32")),
        (PLAIN, True, "int8", "auto", ("onnx", "int8")),
        (VNNI, True, "bf16", "auto", ("torch", "bf16")),
        (VNNI, True, "fp16", "auto", ("torch", "fp16")),
    ],
)
def test_cpu_plan(
    info: CpuInfo, have_onnx: bool, precision: str, runtime: str, want: tuple[str, str]
) -> None:
    plan = plan_speed(
        device="cpu",
        precision=precision,
        runtime=runtime,
        policy=FAMILY.policy,
        info=info,
        have_onnx=have_onnx,
    )
    assert (plan.runtime, plan.precision) == want
    assert plan.reason
    # only "auto"'s int8 is left to the guard; int8 by name is used as asked
    assert plan.guarded == (precision == "auto" and want == ("onnx", "int8"))


def test_gpu_plan_and_impossible_combinations() -> None:
    policy = FAMILY.policy
    cuda = plan_speed(device="cuda:0", precision="auto", runtime="auto", policy=policy, info=VNNI)
    assert cuda.precision == "fp16"
    mps = plan_speed(device="mps", precision="auto", runtime="auto", policy=policy, info=VNNI)
    assert mps.precision == "fp32"
    for kw in (
        {"device": "cuda:0", "precision": "int8", "runtime": "auto"},
        {"device": "cuda:0", "precision": "auto", "runtime": "onnx"},
        {"device": "cpu", "precision": "int8", "runtime": "torch"},
        {"device": "cpu", "precision": "bf16", "runtime": "onnx"},
    ):
        with pytest.raises(ConfigError):
            plan_speed(policy=policy, info=VNNI, have_onnx=True, **kw)


def test_bge_policy_is_fp32_unless_asked() -> None:
    """The BGE family's policy (data in flag.py): fp32 on ONNX Runtime or torch whatever
    the CPU, int8 only by name, fp32 on a GPU unless fp16 is asked for; a caller's model
    in another dtype runs as it is."""
    from rerank_core.backends.flag import FAMILY as BGE

    def plan(**kw: Any) -> tuple[str, str]:
        args: dict[str, Any] = {"device": "cpu", "precision": "auto", "runtime": "auto"}
        args.update({"have_onnx": True, **kw})
        p = plan_speed(policy=BGE.policy, info=VNNI, **args)
        return p.runtime, p.precision

    assert plan() == ("onnx", "int8")  # a candidate: the fidelity guard confirms it or not
    assert plan(have_onnx=False) == ("torch", "fp32")
    assert plan(runtime="torch") == ("torch", "fp32")
    assert plan(precision="int8") == ("onnx", "int8")
    assert plan(device="cuda:0") == ("torch", "fp32")
    assert plan(device="cuda:0", precision="fp16") == ("torch", "fp16")
    assert plan(keep="fp16") == ("torch", "fp16")
    assert plan(keep="fp16", runtime="onnx") == ("onnx", "fp32")  # exports an fp32 copy
    assert plan(keep="bf16", device="cuda:0") == ("torch", "bf16")
    with pytest.raises(ConfigError, match="runs on ONNX Runtime"):
        plan(precision="int8", runtime="torch")
    reason = plan_speed(
        device="cpu", precision="auto", runtime="auto", policy=BGE.policy, have_onnx=False
    ).reason
    assert "onnxruntime is not installed" in reason


def test_cpu_flags_come_from_proc_cpuinfo(tmp_path: Path) -> None:
    fake = tmp_path / "cpuinfo"
    fake.write_text(
        "processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx2 avx512_vnni amx_bf16\n"
    )
    model, flags = cpu.read_cpuinfo(str(fake))
    assert model == "Test CPU 9000"
    info = CpuInfo(model, flags, 2)
    assert info.int8_dot and info.bf16
    assert not CpuInfo("x", frozenset({"avx2"}), 2).int8_dot
    assert cpu.read_cpuinfo(str(tmp_path / "missing")) == ("", frozenset())
    assert "avx512_vnni" in cpu.cpu_flags_summary(flags)


def test_default_threads_respects_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSRANK_NUM_THREADS", "3")
    assert cpu.default_threads() == 3
    monkeypatch.delenv("CROSSRANK_NUM_THREADS")
    assert 1 <= cpu.default_threads(CpuInfo("x", frozenset(), 64)) <= 16


def test_import_stays_light() -> None:
    code = (
        "import sys, rerank_core, rerank_core.scheduler, rerank_core.backends.runtime,"
        " rerank_core.backends.cross_encoder, rerank_core.backends.flag;"
        "bad = [m for m in ('torch', 'onnxruntime', 'onnx', 'transformers') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# ---------------------------------------------------------------- the real model

torch = need("torch")
st = need("sentence_transformers")
need("onnxruntime")

from rerank_core.backends.cross_encoder import CrossEncoderBackend  # noqa: E402

QUERY = "what causes scurvy in sailors"
TEXTS = [
    "Scurvy is caused by a lack of vitamin C in the diet.",
    "Sailors on long voyages often lacked fresh fruit and vegetables, " * 3,
    "The Eiffel Tower is in Paris.",
    "Vitamin C is found in citrus fruits such as lemons and limes. " * 5,
    "James Lind showed in 1747 that citrus fruit cured scurvy among sailors of the Royal Navy.",
    "x",
]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def reference(minilm_path: Path) -> Any:
    return st.CrossEncoder(str(minilm_path), device="cpu")


@pytest.fixture(scope="module")
def exact(minilm_path: Path, onnx_cache: Path) -> CrossEncoderBackend:
    return CrossEncoderBackend(str(minilm_path), precision="exact", onnx_cache_dir=onnx_cache)


@pytest.fixture(scope="module")
def fast(minilm_path: Path, onnx_cache: Path) -> CrossEncoderBackend:
    return CrossEncoderBackend(str(minilm_path), precision="int8", onnx_cache_dir=onnx_cache)


def plan_of(backend: Any) -> tuple[str, str]:
    """The runtime and precision a backend scores with, as describe() tells them."""
    d = backend.describe()
    return d["runtime"], d["precision"]


def onnx_file(backend: Any) -> Path | None:
    path = backend.describe()["onnx_model_path"]
    return Path(path) if path is not None else None


def predict_logits(reference: Any, pairs: list[tuple[str, str]]) -> np.ndarray:
    return np.asarray(reference.predict(pairs, activation_fn=torch.nn.Identity()))


def real_passages(shared_data: Path, n: int = 30) -> tuple[str, list[str]]:
    data = shared_data / "trec-dl-2019-passage"
    run = (data / "runs" / "bm25_top100.trec").read_text().splitlines()
    qid = run[0].split()[0]
    docs = [line.split()[2] for line in run if line.split()[0] == qid][:n]
    query = next(
        json.loads(x)["text"]
        for x in (data / "queries.jsonl").read_text().splitlines()
        if json.loads(x)["_id"] == qid
    )
    text: dict[str, str] = {}
    with (data / "corpus.jsonl").open() as f:
        for line in f:
            row = json.loads(line)
            if row["_id"] in docs:
                text[row["_id"]] = row["text"]
    return query, [text[d] for d in docs]


pytestmark = pytest.mark.model


@pytest.mark.smoke
def test_exact_mode_equals_predict(exact: CrossEncoderBackend, reference: Any) -> None:
    assert plan_of(exact) == ("onnx", "fp32")
    pairs = [(QUERY, t) for t in TEXTS]
    np.testing.assert_allclose(
        exact.score_pairs(pairs), predict_logits(reference, pairs), atol=1e-5
    )
    ours = Reranker(exact, cache=None, normalize="sigmoid").score(QUERY, TEXTS)
    np.testing.assert_allclose(ours, reference.predict(pairs), atol=1e-5)


def test_torch_fp32_still_equals_predict(minilm_path: Path, reference: Any) -> None:
    b = CrossEncoderBackend(str(minilm_path), precision="fp32", runtime="torch")
    assert plan_of(b) == ("torch", "fp32")
    pairs = [(QUERY, t) for t in TEXTS]
    np.testing.assert_allclose(b.score_pairs(pairs), predict_logits(reference, pairs), atol=1e-5)


def test_default_is_the_fast_path_on_this_cpu(minilm_path: Path, onnx_cache: Path) -> None:
    b = CrossEncoderBackend(str(minilm_path), onnx_cache_dir=onnx_cache)
    d = b.describe()
    # on every CPU with the fast extra: the fidelity guard's choice, int8 or fp32
    verdict = d["fidelity"]
    assert verdict is not None and verdict["tried"]
    assert plan_of(b) == ("onnx", "int8" if verdict["variant"] else "fp32")
    assert "precision" in b.fingerprint and d["reason"]
    assert d["backend"] == "cross-encoder" and d["model_id"] == str(minilm_path)
    assert d["device"] == "cpu" and d["num_threads"] >= 1 and d["max_length"] == b.max_length
    assert d["score_scale"] == "logit" and d["fingerprint"] == b.fingerprint
    json.dumps(d)  # plain values only
    assert b.info.model_id == str(minilm_path) and b.info.micro_batching
    for private in ("model", "plan", "runtime", "precision", "num_threads", "onnx_model_path"):
        assert not hasattr(b, private), private  # speed facts only through describe()


def test_int8_scores_track_fp32(
    fast: CrossEncoderBackend, exact: CrossEncoderBackend, shared_data: Path
) -> None:
    query, texts = real_passages(shared_data)
    pairs = [(query, t) for t in texts]
    a, b = np.asarray(exact.score_pairs(pairs)), np.asarray(fast.score_pairs(pairs))
    # an untrained head gives tiny logits; what must hold is that int8 keeps their order
    assert np.corrcoef(a, b)[0, 1] > 0.9
    assert np.max(np.abs(a - b)) < 0.05


@pytest.mark.parametrize("mode", ["int8", "exact"])
def test_scores_never_depend_on_the_batch(
    mode: str, fast: CrossEncoderBackend, exact: CrossEncoderBackend
) -> None:
    backend = fast if mode == "int8" else exact
    pairs = [(QUERY, t) for t in TEXTS] + [("another query", t) for t in TEXTS[:3]]
    together = backend.score_pairs(pairs)
    solo = [backend.score_pairs([p])[0] for p in pairs]
    reversed_ = backend.score_pairs(pairs[::-1])[::-1]
    assert together == solo == reversed_  # the very same floats


def test_fingerprints_keep_caches_apart(
    minilm_path: Path, exact: CrossEncoderBackend, fast: CrossEncoderBackend, onnx_cache: Path
) -> None:
    torch_fp32 = CrossEncoderBackend(str(minilm_path), precision="fp32", runtime="torch")
    bf16 = CrossEncoderBackend(str(minilm_path), precision="bf16")
    prints = {exact.fingerprint, fast.fingerprint, torch_fp32.fingerprint, bf16.fingerprint}
    assert len(prints) == 4
    again = CrossEncoderBackend(str(minilm_path), precision="int8", onnx_cache_dir=onnx_cache)
    assert again.fingerprint == fast.fingerprint


def test_export_is_cached_by_weight_digest(
    minilm_path: Path, fast: CrossEncoderBackend, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = list((onnx_cache / "onnx").iterdir())
    assert len(folders) == 1
    files = {p.name for p in folders[0].iterdir()}
    expected = {
        "model.fp32.onnx",
        "model.fp32.onnx.data",
        "model.int8.onnx",
        "model.int8.onnx.data",
        "meta.json",
    }
    assert files >= expected
    # besides: the fidelity guard's verdict and the variant it chose, if any; nothing
    # half-written or staged is left behind
    for extra in files - expected:
        assert re.fullmatch(
            r"guard\.[0-9a-f]{12}\.json|model\.int8-[a-z0-9-]+\.onnx(\.data)?", extra
        )
    # the weights sit in the .data files, which ONNX Runtime maps instead of copying
    for name in ("model.fp32.onnx", "model.int8.onnx"):
        model_file = folders[0] / name
        assert model_file.stat().st_size < onnx_export.data_file(model_file).stat().st_size
    assert json.loads((folders[0] / "meta.json").read_text())["recipe"] == onnx_export.RECIPE

    def no_export(*a: Any, **k: Any) -> None:
        raise AssertionError("exported again although the cache holds the model")

    monkeypatch.setattr(onnx_export, "_export_fp32", no_export)
    monkeypatch.setattr(onnx_export, "_quantize_int8", no_export)
    again = CrossEncoderBackend(str(minilm_path), precision="int8", onnx_cache_dir=onnx_cache)
    assert again.score_pairs([(QUERY, TEXTS[0])]) == fast.score_pairs([(QUERY, TEXTS[0])])

    # an entry from before weights files were used (weights inside the model file) is
    # exported again in the current layout, with the same scores
    monkeypatch.undo()
    folder = folders[0]
    for name in ("model.fp32.onnx", "model.int8.onnx"):
        onnx_export.data_file(folder / name).unlink()
    (folder / "model.int8.onnx").write_bytes(b"an old file")
    redone = CrossEncoderBackend(str(minilm_path), precision="int8", onnx_cache_dir=onnx_cache)
    assert onnx_export.data_file(folder / "model.int8.onnx").is_file()
    assert redone.score_pairs([(QUERY, TEXTS[0])]) == fast.score_pairs([(QUERY, TEXTS[0])])

    # other weights: another digest, another folder
    ce = st.CrossEncoder(str(minilm_path), device="cpu")
    digest_before = onnx_export.model_digest(ce.model)
    with torch.no_grad():
        ce.model.classifier.bias.add_(1.0)
    assert onnx_export.model_digest(ce.model) != digest_before


def test_digest_ignores_where_the_model_was_loaded_from(minilm_path: Path, tmp_path: Path) -> None:
    import shutil

    model_digest = onnx_export.model_digest

    copy = tmp_path / "elsewhere"
    shutil.copytree(minilm_path, copy)
    a = st.CrossEncoder(str(minilm_path), device="cpu").model
    b = st.CrossEncoder(str(copy), device="cpu").model
    assert a.config._name_or_path != b.config._name_or_path
    assert model_digest(a) == model_digest(b)


def test_export_cache_keeps_the_most_recent_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "onnx"
    for i in range(12):
        d = root / f"digest{i:02d}"
        d.mkdir(parents=True)
        (d / "model.int8.onnx").write_bytes(b"x")
        os.utime(d, (1_000_000 + i, 1_000_000 + i))
    monkeypatch.setenv("CROSSRANK_ONNX_CACHE_ENTRIES", "4")
    onnx_export._prune(root, keep=root / "digest00")  # the one just used stays
    assert sorted(p.name for p in root.iterdir()) == [
        "digest00",
        "digest09",
        "digest10",
        "digest11",
    ]


def test_caller_model_is_never_modified(minilm_path: Path, onnx_cache: Path) -> None:
    ce = st.CrossEncoder(str(minilm_path), device="cpu")
    before = {k: v.clone() for k, v in ce.model.state_dict().items()}
    attention = ce.model.config._attn_implementation
    b = CrossEncoderBackend(ce, precision="bf16")  # runs a converted copy
    assert plan_of(b) == ("torch", "bf16") and next(ce.parameters()).dtype == torch.float32
    assert b.score_pairs([(QUERY, TEXTS[0])])
    CrossEncoderBackend(ce, precision="int8", onnx_cache_dir=onnx_cache, max_length=128)
    assert ce.max_seq_length == 512 and next(ce.parameters()).dtype == torch.float32
    on_onnx = CrossEncoderBackend(ce, precision="int8", onnx_cache_dir=onnx_cache)
    assert plan_of(on_onnx) == ("onnx", "int8")
    assert {p.device.type for p in ce.parameters()} == {"cpu"}  # the caller's weights stay
    for k, v in ce.model.state_dict().items():
        assert torch.equal(v, before[k])
    assert ce.model.config._attn_implementation == attention  # the export used a copy


def test_own_torch_weights_are_released_on_onnx(
    minilm_path: Path, onnx_cache: Path, reference: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ONNX Runtime scores with its own copy: the backend's own torch weights are freed
    from rerank_core.backends.runtime import local

    freed: list[Any] = []
    real = local.release_weights

    def spy(module: Any) -> None:
        freed.append(module)
        real(module)

    monkeypatch.setattr(local, "release_weights", spy)
    fast = CrossEncoderBackend(str(minilm_path), precision="int8", onnx_cache_dir=onnx_cache)
    assert plan_of(fast) == ("onnx", "int8")
    (module,) = freed
    assert {p.device.type for p in module.parameters()} == {"meta"}
    pairs = [("what causes scurvy", "Scurvy is caused by a lack of vitamin C.")] * 2
    got = fast.score_pairs(pairs)
    assert np.allclose(got, predict_logits(reference, pairs), atol=1.0)  # int8 still scores


def test_a_damaged_cached_export_is_removed_and_named(
    minilm_path: Path, onnx_cache: Path, fast: CrossEncoderBackend, tmp_path: Path
) -> None:
    import shutil

    src = onnx_file(fast)
    assert src is not None
    cache = tmp_path / "cache"
    shutil.copytree(src.parent, cache / "onnx" / src.parent.name)
    damaged = cache / "onnx" / src.parent.name / src.name
    damaged.write_bytes(b"not an onnx model")
    with pytest.raises(ModelLoadError, match="could not load the exported model") as info:
        CrossEncoderBackend(str(minilm_path), precision="int8", onnx_cache_dir=cache)
    assert str(damaged) in str(info.value) and not damaged.exists()
    assert not damaged.with_name(damaged.name + ".data").exists()
    again = CrossEncoderBackend(str(minilm_path), precision="int8", onnx_cache_dir=cache)
    assert damaged.is_file() and again.score_pairs([("a", "b")]) == fast.score_pairs([("a", "b")])


def test_failed_export_falls_back_unless_onnx_was_asked_for(
    minilm_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    def broken(*a: Any, **k: Any) -> None:
        raise onnx_export.OnnxExportError("simulated exporter failure")

    monkeypatch.setattr(onnx_export, "ensure_onnx_model", broken)
    with caplog.at_level("WARNING", logger="crossrank"):
        b = CrossEncoderBackend(str(minilm_path), onnx_cache_dir=tmp_path)
    assert plan_of(b)[0] == "torch" and "simulated exporter failure" in caplog.text
    assert b.describe()["reason"] == "fallback: simulated exporter failure"
    assert plan_of(b)[1] == ("bf16" if cpu.cpu_info().bf16 else "fp32")
    assert len(b.score_pairs([(QUERY, TEXTS[0])])) == 1
    exact = CrossEncoderBackend(str(minilm_path), precision="exact", onnx_cache_dir=tmp_path)
    assert plan_of(exact) == ("torch", "fp32")
    for asked in ({"runtime": "onnx"}, {"precision": "int8"}):
        with pytest.raises(onnx_export.OnnxExportError, match="simulated"):
            CrossEncoderBackend(str(minilm_path), onnx_cache_dir=tmp_path, **asked)


def test_without_onnxruntime(minilm_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    b = CrossEncoderBackend(str(minilm_path))
    assert plan_of(b) == ("torch", "bf16" if cpu.cpu_info().bf16 else "fp32")
    for asked in ({"precision": "int8"}, {"runtime": "onnx"}):
        with pytest.raises(MissingDependencyError, match=r"crossrank\[fast\]") as ei:
            CrossEncoderBackend(str(minilm_path), **asked)  # type: ignore[arg-type]
        assert ei.value.extra == "fast" and "not installed" in str(ei.value)


@pytest.mark.parametrize("step", ["_export_fp32", "_quantize_int8", "ensure_onnx_model"])
@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_during_export_propagates_unchanged(
    step: str,
    interrupt: type[BaseException],
    minilm_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C is never turned into a ModelLoadError, nor into a fallback to torch."""

    def stop(*a: Any, **k: Any) -> None:
        raise interrupt()

    monkeypatch.setattr(onnx_export, step, stop)
    # "exact" would fall back to torch on an export error; int8 is the step that quantizes
    precision = "int8" if step == "_quantize_int8" else "exact"
    with pytest.raises(interrupt):
        CrossEncoderBackend(str(minilm_path), precision=precision, onnx_cache_dir=tmp_path / step)
    leftovers = [p for p in (tmp_path / step).rglob("*") if p.is_file() and ".fp32." in p.name]
    assert not [p for p in leftovers if p.parent.name.startswith(".")]  # no staged files


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_while_scoring_propagates_unchanged(
    threads: int,
    interrupt: type[BaseException],
    minilm_path: Path,
    onnx_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rerank_core.backends.runtime import OnnxRunner

    b = CrossEncoderBackend(
        str(minilm_path), precision="int8", onnx_cache_dir=onnx_cache, num_threads=threads
    )

    def stop(*a: Any, **k: Any) -> float:
        raise interrupt()

    monkeypatch.setattr(OnnxRunner, "_run_one", stop)
    with pytest.raises(interrupt):
        b.score_pairs([(QUERY, t) for t in TEXTS])
    with pytest.raises(interrupt):  # and through the engine, even with passthrough
        Reranker(b, cache=None, on_error="passthrough").score(QUERY, TEXTS)
    monkeypatch.undo()
    assert len(b.score_pairs([(QUERY, t) for t in TEXTS])) == len(TEXTS)  # still usable
    b.close()


def test_bad_options_are_config_errors(minilm_path: Path) -> None:
    for kw in (
        {"precision": "int4"},
        {"runtime": "tensorrt"},
        {"num_threads": 0},
        {"num_threads": True},
        {"precision": "bf16", "runtime": "onnx"},
    ):
        with pytest.raises(ConfigError):
            CrossEncoderBackend(str(minilm_path), **kw)


def test_thread_settings_of_the_host_are_left_alone(minilm_path: Path, fast: Any) -> None:
    before = torch.get_num_threads()
    fast.score_pairs([(QUERY, t) for t in TEXTS])
    assert torch.get_num_threads() == before
    b = CrossEncoderBackend(str(minilm_path), precision="fp32", runtime="torch", num_threads=1)
    b.score_pairs([(QUERY, t) for t in TEXTS])
    assert torch.get_num_threads() == before  # set while scoring, restored after


def test_warm_calls_skip_tokenization(fast: CrossEncoderBackend) -> None:
    rr = Reranker(fast)
    first = rr.rerank(QUERY, TEXTS)
    calls: list[int] = []
    inner = fast.tokenizer._inner
    original = inner.token_spans

    def spy(texts: Any) -> Any:
        calls.append(len(texts))
        return original(texts)

    inner.token_spans = spy  # type: ignore[method-assign]
    try:
        assert rr.rerank(QUERY, TEXTS) == first
    finally:
        del inner.token_spans
    assert calls == []
    assert fast.tokenizer.token_spans(TEXTS) == inner.token_spans(TEXTS)


def test_many_threads_and_tasks_on_the_real_model(fast: CrossEncoderBackend) -> None:
    jobs = [(f"{QUERY} {i}", [t + f" ({i})" for t in TEXTS] * 3) for i in range(16)]
    rr = Reranker(fast, cache=None)
    solo = [rr.rerank(q, ts) for q, ts in jobs]
    got: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []
    gate = threading.Barrier(len(jobs))

    def call(i: int) -> None:
        gate.wait()
        try:
            got[i] = rr.rerank(*jobs[i])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors  # no "Already borrowed", no race
    assert got == solo

    async def tasks() -> list[Any]:
        pending = [asyncio.ensure_future(rr.arerank(q, ts)) for q, ts in jobs]
        await asyncio.sleep(0.01)
        pending[3].cancel()
        return list(await asyncio.gather(*pending, return_exceptions=True))

    out = asyncio.run(tasks())
    for i, r in enumerate(out):
        if i == 3:
            assert isinstance(r, (asyncio.CancelledError, list))
        else:
            assert r == solo[i]
    assert (stats := rr.batcher_stats) is not None and stats.max_requests_per_generation > 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_process_can_score(fast: CrossEncoderBackend) -> None:
    """Servers fork after loading (gunicorn --preload): the child must not wait on the
    parent's threads."""
    import multiprocessing

    rr = Reranker(fast, cache=None)
    expected = rr.score(QUERY, TEXTS)  # parent's worker threads exist now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def child() -> None:
        queue.put(rr.score(QUERY, TEXTS))

    proc = ctx.Process(target=child)
    proc.start()
    got = queue.get(timeout=120)
    proc.join(30)
    assert got == expected and proc.exitcode == 0


@pytest.mark.data
def test_bench_command_writes_table_and_chart(
    minilm_path: Path, tmp_path: Path, shared_data: Path
) -> None:
    env = dict(os.environ, CROSSRANK_CACHE_DIR=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "rerank_core.cli", "bench", "--model", str(minilm_path)]
    cmd += ["--data", str(shared_data / "trec-dl-2019-passage"), "--queries", "1"]
    cmd += ["--candidates", "6", "--rounds", "1", "--callers", "3", "--caller-passages", "2"]
    cmd += ["--long-tokens", "600", "--only", "crossrank-default", "--out", str(tmp_path)]
    cmd += ["--no-memory"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    md = (tmp_path / "speed.md").read_text()
    assert "CrossEncoder.predict" in md and "crossrank default" in md
    report = json.loads((tmp_path / "speed.json").read_text())
    default, padded, peer = report["concurrency"]
    assert default["identical"] and default["max_abs_diff"] == 0.0 and not default["errors"]
    assert padded["max_abs_diff"] < 1e-5 and not padded["errors"]
    assert peer["label"].startswith("sentence-transformers") and peer["threads_pairs_per_s"] > 0
    room = report["headroom"]
    assert room["per_pair_pairs_per_s"] > 0 and room["best_batch_size"] in (2, 4, 8, 16, 32)
    assert room["batch_gain"] == pytest.approx(
        room["best_batch_pairs_per_s"] / room["per_pair_pairs_per_s"]
    )
    assert "Headroom for shared batches" in md
    rows = {r["name"]: r for r in report["rows"]}
    assert rows["st-predict"]["ratio"] == pytest.approx(1.0)
    assert rows["crossrank-default"]["pairs_per_s"] > 0
    assert report["long_docs"][0]["windows"] >= 2
    assert (tmp_path / "speed.png").stat().st_size > 1000
