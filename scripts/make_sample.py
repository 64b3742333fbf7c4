"""Build the small SciFact sample shipped with crossrank (run once; needs ../shared/data).

Picks 30 SciFact test claims, their judged-relevant abstracts and the BM25 top-10
of each (hard negatives), about 300 abstracts in all. SciFact: CC BY 4.0 (claims),
ODC-By 1.0 (abstracts, S2ORC); see shared/rerank_core/data/README.md.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import bm25s

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/scifact")
OUT = Path(__file__).resolve().parents[1] / "shared" / "rerank_core" / "data"

corpus = [json.loads(line) for line in (SRC / "corpus.jsonl").open()]
queries = {q["_id"]: q["text"] for q in map(json.loads, (SRC / "queries.jsonl").open())}
qrels: dict[str, set[str]] = {}
with (SRC / "qrels" / "test.tsv").open() as f:
    for row in csv.DictReader(f, delimiter="\t"):
        qrels.setdefault(row["query-id"], set()).add(row["corpus-id"])

texts = [f"{d['title']}. {d['text']}" for d in corpus]
retriever = bm25s.BM25()
retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)

chosen = sorted(qrels, key=int)[:30]
keep: set[int] = set()
id_to_row = {d["_id"]: i for i, d in enumerate(corpus)}
for qid in chosen:
    keep.update(id_to_row[d] for d in qrels[qid])
    res, _ = retriever.retrieve(
        bm25s.tokenize([queries[qid]], stopwords="en", show_progress=False),
        k=10,
        show_progress=False,
    )
    keep.update(int(i) for i in res[0])

with (OUT / "scifact_sample.jsonl").open("w") as f:
    for i in sorted(keep):
        d = corpus[i]
        f.write(json.dumps({"id": d["_id"], "title": d["title"], "text": d["text"]}) + "\n")
with (OUT / "scifact_sample_queries.jsonl").open("w") as f:
    for qid in chosen:
        f.write(
            json.dumps({"id": qid, "text": queries[qid], "relevant": sorted(qrels[qid])}) + "\n"
        )
print(f"{len(keep)} abstracts, {len(chosen)} queries -> {OUT}")
