"""Can activation smoothing make full dynamic int8 rank like fp32? (issue 13, a negative result)

Dynamic int8 quantizes each activation tensor with one scale computed at run time; a few
hidden channels with large values (LayerNorm outputs, the GELU output feeding the
feed-forward projection) make that scale coarse for all the others. SmoothQuant-style
smoothing moves per-channel range from the activations into the weights: for every group of
linear layers reading the same tensor X, ``X' = X / s`` (one ``Mul``) and ``W' = diag(s) W``
with ``s_j = max|X_j|**alpha / max|W_j|**(1 - alpha)``, calibrated on half of the probe's
query groups (the other half and all long pairs are only measured).

For each model and alpha this prints the fidelity guard's probe figures (the same
:func:`~rerank_core.backends.runtime.fidelity.compare` and bar the guard applies) for the
whole model quantized, and with ``--per-kind`` for one kind of linear layer at a time
(query, key, value, attention output, feed-forward in, feed-forward out), which shows where
the error comes from. Results: docs/fidelity.md ("Activation smoothing").

    python -m benchmarks.smoothquant --models models/crossrank-minilm-l6 --alphas 0,0.5,0.8,0.9
    python -m benchmarks.smoothquant --models models/crossrank-minilm-l6 --alphas 0,0.8 --per-kind
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from rerank_core import Reranker
from rerank_core.backends.runtime.fidelity import DEFAULT_BAR, compare
from rerank_core.backends.runtime.probe import load_probe
from transformers import AutoTokenizer

Feeds = list[dict[str, np.ndarray]]
KINDS = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")


def session(path: str | Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def scores(s: ort.InferenceSession, feeds: Feeds) -> list[float]:
    # one pair per sequence, as the engine scores them (no padding inside a tensor)
    return [float(np.asarray(s.run(None, f)[0]).reshape(-1)[0]) for f in feeds]


def linear_groups(model: Any) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """MatMuls with constant 2-D weights, grouped by the activation they read."""
    weights = {t.name: t for t in model.graph.initializer}
    groups: dict[str, list[Any]] = {}
    for n in model.graph.node:
        w = weights.get(n.input[1]) if n.op_type == "MatMul" else None
        if w is not None and len(w.dims) == 2:
            groups.setdefault(n.input[0], []).append(n)
    return groups, weights


def kind(node_name: str) -> str:
    n = node_name.lower()
    for key, name in (("query", "query"), ("key", "key"), ("value", "value")):
        if f"/{key}/" in n:
            return name
    if "attention/output" in n:
        return "attn_out"
    if "intermediate" in n:
        return "ffn_in"
    return "ffn_out" if "output/dense" in n else "other"


def channel_max(fp32: Path, feeds: Feeds, work: Path) -> dict[str, np.ndarray]:
    model = onnx.load(str(fp32))
    groups, _ = linear_groups(model)
    for x in groups:
        model.graph.output.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, None))
    calib = work / "calib.onnx"
    onnx.save_model(model, str(calib), save_as_external_data=True, location="calib.onnx.data")
    s = session(calib, 2)
    names = [o.name for o in s.get_outputs()][1:]
    amax: dict[str, np.ndarray] = {}
    for f in feeds:
        for name, a in zip(names, s.run(names, f), strict=True):
            v = np.abs(a.reshape(-1, a.shape[-1])).max(0)
            amax[name] = np.maximum(amax[name], v) if name in amax else v
    return amax


def smooth(fp32: Path, dst: Path, amax: dict[str, np.ndarray], alpha: float) -> None:
    model = onnx.load(str(fp32))
    groups, weights = linear_groups(model)
    graph = model.graph
    muls = {}
    for x, nodes in groups.items():
        arrays = [numpy_helper.to_array(weights[n.input[1]]) for n in nodes]
        wmax = np.max([np.abs(a).max(1) for a in arrays], axis=0)
        s = np.maximum(amax[x], 1e-5) ** alpha / np.maximum(wmax, 1e-5) ** (1 - alpha)
        s = np.clip(s, 1e-3, 1e3).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(1.0 / s, f"{x}.smooth_inv"))
        muls[f"{x}.smooth"] = helper.make_node(
            "Mul", [x, f"{x}.smooth_inv"], [f"{x}.smooth"], name=f"{x}.smooth_mul"
        )
        for n, a in zip(nodes, arrays, strict=True):
            t = weights[n.input[1]]
            t.CopyFrom(numpy_helper.from_array((a * s[:, None]).astype(np.float32), t.name))
            n.input[0] = f"{x}.smooth"
    ordered = []
    for n in graph.node:  # each Mul right before its first reader keeps the graph sorted
        for i in n.input:
            if i in muls:
                ordered.append(muls.pop(i))
        ordered.append(n)
    del graph.node[:]
    graph.node.extend(ordered)
    onnx.save_model(model, str(dst), save_as_external_data=True, location=dst.name + ".data")


def quantize(src: Path, dst: Path, only: str | None) -> None:
    model = onnx.load(str(src), load_external_data=False)
    groups, _ = linear_groups(model)
    names = [n.name for nodes in groups.values() for n in nodes]
    exclude = [n for n in names if only is not None and kind(n) != only]
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=exclude,
        op_types_to_quantize=["MatMul"],
        use_external_data_format=True,
        extra_options={"MatMulConstBOnly": True, "DefaultTensorType": TensorProto.FLOAT},
    )


def run(
    model_dir: str, alphas: list[float], per_kind: bool, max_length: int
) -> list[dict[str, Any]]:
    rr = Reranker("minilm", model=model_dir, precision="exact")  # exports fp32 ONNX
    fp32 = Path(rr.describe()["onnx_model_path"])
    rr.close()
    tok = AutoTokenizer.from_pretrained(model_dir)
    inputs = [i.name for i in onnx.load(str(fp32), load_external_data=False).graph.input]
    probe = load_probe()
    pairs, groups = probe.pairs(), probe.group_slices()
    long = slice(groups[-1].stop, len(pairs))
    feeds: Feeds = []
    for q, p in pairs:
        e = tok(q, p, truncation="only_second", max_length=max_length, return_tensors="np")
        feeds.append({k: e[k].astype(np.int64) for k in inputs})
    ref = scores(session(fp32, 1), feeds)
    calib = [f for i, sl in enumerate(groups) if i % 2 for f in feeds[sl]] + feeds[long][::2]
    rows = []
    with tempfile.TemporaryDirectory(prefix="crossrank-sq-") as tmp:
        work = Path(tmp)
        amax = channel_max(fp32, calib, work)
        for alpha in alphas:
            src = fp32
            if alpha > 0:
                src = work / f"smooth{alpha}.onnx"
                smooth(fp32, src, amax, alpha)
            for only in (None, *KINDS) if per_kind else (None,):
                dst = work / f"q-{alpha}-{only or 'all'}.onnx"
                quantize(src, dst, only)
                s = session(dst, 1)
                t0 = time.perf_counter()
                got = scores(s, feeds)
                pps = len(feeds) / (time.perf_counter() - t0)
                f = compare(ref, got, groups, long)
                row = {
                    "model": model_dir,
                    "alpha": alpha,
                    "quantized": only or "all",
                    "figures": f.as_dict(),
                    "passes_bar": not DEFAULT_BAR.failures(f),
                    "pairs_per_s_1_thread": round(pps, 1),
                }
                rows.append(row)
                print(
                    f"{Path(model_dir).name:22} alpha={alpha:<4} {row['quantized']:8} "
                    f"{f.summary()}  {'pass' if row['passes_bar'] else 'fail'}",
                    flush=True,
                )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", required=True, help="comma-separated model folders")
    ap.add_argument("--alphas", default="0,0.5,0.8,0.9", help="0 = no smoothing")
    ap.add_argument("--per-kind", action="store_true", help="also one kind of layer at a time")
    ap.add_argument("--max-length", type=int, default=192)
    ap.add_argument("--out", help="write the rows as JSON")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    alphas = [float(x) for x in a.alphas.split(",")]
    rows = [r for m in a.models.split(",") for r in run(m, alphas, a.per_kind, a.max_length)]
    if a.out:
        Path(a.out).write_text(json.dumps({"load": os.getloadavg(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
