"""Split a BEIR folder's judged queries into two folders (halves), for a dev split where
the dataset has only test qrels (DBpedia-Entity subset: `crossrank eval --fusion` chooses
the weight on one half and reports on the other, then the other way round).

    .venv/bin/python -m benchmarks.quality.split_queries ../shared/data/dbpedia-entity-subset \\
        /tmp/dbpedia-a /tmp/dbpedia-b

The first half of the queries in `qrels/<split>.tsv` order (rounded down) goes to the
first folder, the rest to the second, each as `qrels/test.tsv`; `corpus.jsonl` and
`queries.jsonl` are symbolic links to the source's. Nothing is shuffled: the split is a
function of the qrels file alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def split(source: Path, first: Path, second: Path, qrels_split: str = "test") -> list[list[str]]:
    """Write the two folders; returns the query ids of each half."""
    lines = (source / "qrels" / f"{qrels_split}.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], [r for r in lines[1:] if r.strip()]
    qids: list[str] = []
    for r in rows:
        q = r.split("\t")[0]
        if q not in qids:
            qids.append(q)
    if len(qids) < 2:
        raise SystemExit(f"{source}: {len(qids)} judged queries, at least 2 needed")
    halves = [qids[: len(qids) // 2], qids[len(qids) // 2 :]]
    for folder, half in zip((first, second), halves, strict=True):
        keep = set(half)
        (folder / "qrels").mkdir(parents=True, exist_ok=True)
        for name in ("corpus.jsonl", "queries.jsonl"):
            link = folder / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to((source / name).resolve())
        kept = [r for r in rows if r.split("\t")[0] in keep]
        (folder / "qrels" / "test.tsv").write_text("\n".join([header, *kept]) + "\n")
    return halves


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="BEIR folder")
    ap.add_argument("first", type=Path, help="folder for the first half of the queries")
    ap.add_argument("second", type=Path, help="folder for the second half")
    ap.add_argument("--split", default="test", help="qrels split to divide (default test)")
    args = ap.parse_args()
    halves = split(args.source, args.first, args.second, args.split)
    for folder, half in zip((args.first, args.second), halves, strict=True):
        print(f"{folder}: {len(half)} queries ({', '.join(half)})")


if __name__ == "__main__":
    main()
