"""The ``crossrank`` command's registry and its exit-code convention.

Subcommands come from the ``crossrank.commands`` entry-point group; a command whose package
is absent or whose extra is missing says which extra to install (one line, exit 2). Every
subcommand exits 0 ok, 2 usage/configuration, 1 run-time failure, with one line on stderr
and a traceback only under ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib.abc
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib
from rerank_core import cli
from rerank_core.commands import positive_int

ROOT = Path(__file__).resolve().parents[2]

FAILING_COMMAND = '''
"""``crossrank boom``: raises what --raise names."""
import argparse

from rerank_core import errors

HELP = "raise an error on purpose"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--raise", dest="kind", default="none")
    p.add_argument("--count", type=int, default=1)


def run(args: argparse.Namespace) -> int:
    if args.kind == "config":
        raise errors.ConfigError("top_n must be a positive int, got 0")
    if args.kind == "input":
        raise errors.InputError("query must be a non-empty string")
    if args.kind == "dependency":
        raise errors.MissingDependencyError("needs 'x'; pip install x", extra="x", package="x")
    if args.kind == "backend":
        raise errors.ModelLoadError("could not load model 'nope'\\nsecond line")
    if args.kind == "bug":
        raise RuntimeError("an internal error")
    return 0
'''


@pytest.fixture
def fake_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A registry holding rerank plus two test commands: ``boom`` (raises on request) and
    ``needy`` (REQUIRES a module that does not exist)."""
    pkg = tmp_path / "fake_cmds"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "boom.py").write_text(textwrap.dedent(FAILING_COMMAND))
    (pkg / "needy.py").write_text(
        "HELP = 'needs an extra'\n"
        "REQUIRES = (('crossrank_no_such_module', 'eval'),)\n"
        "def add_arguments(p):\n    pass\n"
        "def run(args):\n    return 0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = {
        "rerank": "rerank_core.commands.rerank",
        "boom": "fake_cmds.boom",
        "needy": "fake_cmds.needy",
    }
    monkeypatch.setattr(cli, "_registered", lambda: dict(registry))
    yield registry
    for name in ("fake_cmds", "fake_cmds.boom", "fake_cmds.needy"):
        sys.modules.pop(name, None)


def one_line(err: str) -> bool:
    return err.count("\n") == 1 and "Traceback" not in err


# ---------------------------------------------------------------- the registry


def test_pyproject_registers_every_command_the_fallback_knows() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    group = meta["project"]["entry-points"][cli.ENTRY_POINT_GROUP]
    assert group == cli.FALLBACK
    assert set(cli.KNOWN_EXTRAS) == set(group) - set(cli.BUILTIN)
    extras = meta["project"]["optional-dependencies"]
    assert {"eval", "train"} <= set(extras)
    everything = extras["all"][0]
    assert all(x in everything for x in ("minilm", "eval", "train"))  # eval|finetune|bench


def test_every_registered_command_is_listed_with_its_help() -> None:
    listed = {c.name: c for c in cli.commands()}
    assert {"rerank", "eval", "finetune", "bench"} <= set(listed)
    assert listed["eval"].help.startswith("evaluate reranking quality")
    assert all(c.available for c in listed.values()), [c.problem for c in listed.values()]


def test_a_missing_extra_is_named_in_help_and_when_run(
    fake_commands: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "boom" in out and "not available here" in out
    hint = 'install it with: pip install "crossrank[eval]"'
    assert f"needy      needs crossrank_no_such_module (not installed); {hint}" in out
    assert cli.main(["needy"]) == 2
    err = capsys.readouterr().err
    assert one_line(err) and 'pip install "crossrank[eval]"' in err
    assert err.startswith("crossrank needy: needs crossrank_no_such_module")


class _BlockLab(importlib.abc.MetaPathFinder):
    """Makes ``crossrank_lab`` unimportable, as in an install without it."""

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name == "crossrank_lab" or name.startswith("crossrank_lab."):
            raise ModuleNotFoundError(f"No module named {name!r}", name="crossrank_lab")
        return None


@pytest.mark.parametrize(("command", "extra"), [("eval", "eval"), ("finetune", "train")])
def test_an_absent_lab_package_gives_the_one_line_hint(
    command: str,
    extra: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == "crossrank_lab"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_BlockLab(), *sys.meta_path])
    assert cli.main([command, "--help"]) == 2
    err = capsys.readouterr().err
    assert one_line(err)
    assert err == (
        f"crossrank {command}: crossrank_lab is not installed; "
        f'install it with: pip install "crossrank[{extra}]"\n'
    )
    with pytest.raises(SystemExit):  # rerank still works; eval is listed as not available
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "rerank" in out and f"{command}" in out.split("not available here:")[1]


def test_no_command_prints_the_help_as_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: crossrank") and "rerank" in err


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


# ---------------------------------------------------------------- exit codes


@pytest.mark.parametrize(
    ("kind", "code", "text"),
    [
        ("none", 0, None),
        ("config", 2, "top_n must be a positive int"),
        ("input", 2, "query must be a non-empty string"),
        ("dependency", 2, "pip install x"),
        ("backend", 1, "could not load model 'nope' second line"),
        ("bug", 1, "RuntimeError: an internal error (run with --debug for the traceback)"),
    ],
)
def test_exit_codes_follow_one_convention(
    fake_commands: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    kind: str,
    code: int,
    text: str | None,
) -> None:
    assert cli.main(["boom", "--raise", kind]) == code
    err = capsys.readouterr().err
    if text is None:
        assert err == ""
    else:
        assert one_line(err) and err.startswith("crossrank boom: ") and text in err


def test_argparse_errors_exit_2(
    fake_commands: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["boom", "--count", "many"])
    assert exc.value.code == 2
    assert "invalid int value: 'many'" in capsys.readouterr().err


def test_debug_shows_the_traceback(fake_commands: dict[str, str]) -> None:
    with pytest.raises(RuntimeError, match="an internal error"):
        cli.main(["--debug", "boom", "--raise", "bug"])
    from rerank_core.errors import ConfigError

    with pytest.raises(ConfigError):
        cli.main(["--debug", "boom", "--raise", "config"])


def test_positive_int_is_the_one_argparse_type() -> None:
    assert positive_int("3") == 3
    for bad in ("0", "-2", "x", "1.5", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="must be a positive int"):
            positive_int(bad)


# ---------------------------------------------------------------- the tooling commands


def _cli(*args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess[str], float]:
    code = (
        "import sys\n"
        "from rerank_core.cli import main\n"
        "try:\n"
        f"    rc = main({list(args)!r})\n"
        "except SystemExit as exc:\n"
        "    rc = exc.code\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'sentence_transformers', "
        "'onnxruntime', 'matplotlib', 'datasets') if m in sys.modules)\n"
        "print('HEAVY', ','.join(heavy), file=sys.stderr)\n"
        "raise SystemExit(rc)\n"
    )
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )
    return res, time.perf_counter() - t0


@pytest.mark.parametrize("command", ["eval", "finetune", "bench"])
def test_tool_help_is_instant_and_imports_nothing_heavy(command: str) -> None:
    res, _ = _cli(command, "--help")
    assert res.returncode == 0, res.stderr
    assert f"usage: crossrank {command}" in res.stdout
    assert res.stderr.strip().endswith("HEAVY"), res.stderr  # no torch & co for --help


def test_bench_rejects_bad_paths_before_loading_anything(tmp_path: Path) -> None:
    res, _ = _cli("bench", "--data", str(tmp_path / "nope"), "--model", str(tmp_path))
    assert res.returncode == 2
    first = res.stderr.splitlines()[0]
    assert first == f"crossrank bench: --data {tmp_path / 'nope'}: no such folder"
    assert res.stderr.strip().endswith("HEAVY")
    res, _ = _cli("bench", "--data", str(tmp_path))
    assert res.returncode == 2 and "not a TREC DL passage folder" in res.stderr
    res, _ = _cli("bench", "--only", "crossrank-fast")
    assert res.returncode == 2 and "unknown configuration" in res.stderr
    res, _ = _cli("bench", "--queries", "0")
    assert res.returncode == 2 and "must be a positive int, got '0'" in res.stderr


def test_bench_skips_a_missing_peer_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from crossrank_lab.bench import speed

    monkeypatch.setitem(
        speed.PEERS, "langchain", (("crossrank_no_such_peer", "no-such-peer", "the dev group"),)
    )
    assert speed.peer_problem("langchain") == (
        "needs no-such-peer (not installed; from the dev group)"
    )
    assert speed.peer_problem("crossrank-default") is None


def test_eval_rejects_a_bad_rel_level_as_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "tiny"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text('{"_id": "d1", "title": "", "text": "scurvy"}\n')
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "scurvy"}\n')
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    code = cli.main(["eval", str(root), "--first-stage-only", "--rel-level", "high"])
    assert code == 2
    assert "--rel-level must be 'auto' or a grade" in capsys.readouterr().err
