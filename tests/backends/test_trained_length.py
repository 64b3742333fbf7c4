"""Default window length from the training record (issue 16 item 3): a local folder's
``crossrank_training.json`` gives the local backends their default ``max_length``; an
explicit ``max_length=`` wins; no record keeps the model's own."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from _tiny_models import tiny_xlmr_once
from rerank_core.backends.trained_length import TRAINING_RECORD, trained_max_length

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "crossrank-minilm-l6"


def _record(folder: Path, record: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TRAINING_RECORD).write_text(json.dumps(record), encoding="utf-8")
    return folder


def test_reads_top_level_then_config_key(tmp_path: Path) -> None:
    assert trained_max_length(_record(tmp_path / "a", {"trained_max_length": 160})) == 160
    assert trained_max_length(_record(tmp_path / "b", {"config": {"max_length": 192}})) == 192
    both = {"trained_max_length": 128, "config": {"max_length": 256}}
    assert trained_max_length(_record(tmp_path / "c", both)) == 128


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"config": {"max_length": "192"}},
        {"trained_max_length": 4},
        [1, 2],
        {"trained_max_length": True},
    ],
)
def test_unusable_values_give_none(tmp_path: Path, record: object) -> None:
    assert trained_max_length(_record(tmp_path, record)) is None


def test_not_a_folder_or_no_record_gives_none(tmp_path: Path) -> None:
    assert trained_max_length(None) is None
    assert trained_max_length(object()) is None
    assert trained_max_length("cross-encoder/ms-marco-MiniLM-L-6-v2") is None
    assert trained_max_length(tmp_path) is None


def test_broken_record_warns_and_gives_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / TRAINING_RECORD).write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="crossrank"):
        assert trained_max_length(tmp_path) is None
    assert TRAINING_RECORD in caplog.text


def test_bundled_model_records_its_training_length() -> None:
    assert trained_max_length(BUNDLED) == 192


def test_cross_encoder_default_follows_training_explicit_wins() -> None:
    from rerank_core import Reranker
    from rerank_core.backends.cross_encoder import CrossEncoderBackend

    default = CrossEncoderBackend(str(BUNDLED), precision="exact")
    assert default.max_length == 192
    assert CrossEncoderBackend(str(BUNDLED), precision="exact", max_length=512).max_length == 512
    with Reranker("minilm", model=str(BUNDLED), precision="exact", cache=None) as rr:
        assert rr.backend.max_length == 192
        # windows are cut to the trained length: a long text gets several
        long_text = " ".join(["vitamin C prevents scurvy in sailors"] * 80)
        assert rr.rerank("what prevents scurvy", [long_text])[0].n_windows > 1


def test_cross_encoder_without_record_keeps_model_length(tmp_path: Path) -> None:
    from rerank_core.backends.cross_encoder import CrossEncoderBackend

    copy = tmp_path / "no-record"
    shutil.copytree(BUNDLED, copy, ignore=shutil.ignore_patterns(TRAINING_RECORD))
    assert CrossEncoderBackend(str(copy), precision="exact").max_length == 512


def test_flag_backend_default_follows_training(tmp_path_factory: pytest.TempPathFactory) -> None:
    from rerank_core.backends.flag import FlagRerankerBackend

    base = tiny_xlmr_once(tmp_path_factory)
    folder = tmp_path_factory.mktemp("tiny-trained") / "m"
    shutil.copytree(base, folder)
    _record(folder, {"trained_max_length": 64})
    assert FlagRerankerBackend(str(folder), runtime="torch").max_length == 64
    assert FlagRerankerBackend(str(folder), runtime="torch", max_length=100).max_length == 100
    assert FlagRerankerBackend(str(base), runtime="torch").max_length == 128
