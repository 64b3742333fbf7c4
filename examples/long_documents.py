"""Long documents: chunk-max scoring finds the relevant part; truncation never reads it.

We build a few long documents, each several unrelated SciFact abstracts in a row, and
hide the abstract that is relevant to a SciFact claim deep inside one of them, far past
the first 512 tokens. crossrank cuts every document into overlapping token windows,
scores each window with the claim and keeps the best one (chunk-max); it reports the
character span of that window. With ``WindowConfig(max_windows=1)`` it scores only the
first window, as a reranker that truncates at ``max_length`` would, and says so
(``truncated=True``).

    python examples/long_documents.py --model /path/to/cross-encoder   # or CROSSRANK_MODEL
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import _common
from rerank_core import (
    Backend,
    MissingDependencyError,
    ModelLoadError,
    RankedText,
    Reranker,
    WindowConfig,
    load_backend,
)

LABELS = "ABCDEFGH"


@dataclass
class LongDocs:
    texts: list[str]
    target_doc: int  # which document holds the relevant abstract
    target_span: tuple[int, int]  # where in that document (characters)


def build(
    passages: Sequence[_common.Passage],
    claim: _common.Claim,
    *,
    n_docs: int = 4,
    per_doc: int = 6,
    position: int = 4,
    seed: int = 0,
) -> LongDocs:
    """``n_docs`` documents of ``per_doc`` abstracts; document 1 holds the claim's relevant
    abstract as its ``position``-th part, the rest are abstracts not judged relevant."""
    relevant = [p for p in passages if p.id in claim.relevant]
    if not relevant:
        raise ValueError(f"claim {claim.id!r} has no relevant abstract in the sample")
    fillers = [p for p in passages if p.id not in claim.relevant]
    random.Random(seed).shuffle(fillers)
    texts: list[str] = []
    span = (0, 0)
    for d in range(n_docs):
        parts = [fillers.pop().body for _ in range(per_doc)]
        if d == 1:
            parts[position] = relevant[0].body
            start = sum(len(x) + 2 for x in parts[:position])
            span = (start, start + len(parts[position]))
        texts.append("\n\n".join(parts))
    return LongDocs(texts, 1, span)


def compare(
    backend: Backend, query: str, docs: LongDocs
) -> tuple[list[RankedText], list[RankedText]]:
    """Rank with chunk-max over every window, and with the first window only."""
    chunk_max = Reranker(backend, window=WindowConfig(aggregate="max"), cache=None)
    truncating = Reranker(backend, window=WindowConfig(max_windows=1), cache=None)
    return chunk_max.rerank(query, docs.texts), truncating.rerank(query, docs.texts)


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def report(title: str, ranked: list[RankedText], docs: LongDocs) -> None:
    print(f"\n{title}")
    print("rank  doc   score     windows       best window (chars)   on the relevant abstract?")
    for i, r in enumerate(ranked, 1):
        holds = r.index == docs.target_doc and overlaps(r.window, docs.target_span)
        windows = f"{r.n_windows}" + (" (truncated)" if r.truncated else "")
        print(
            f"{i:3d}.   {LABELS[r.index]}   {r.score:8.4f}  {windows:<13} "
            f"{r.window[0]:>6}–{r.window[1]:<6}        {'yes' if holds else 'no'}"
        )


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=4, help="long documents to build (2-8)")
    p.add_argument("--per-doc", type=int, default=6, help="abstracts per document")
    args = p.parse_args()
    if args.query:
        p.error("this example needs a SciFact claim with a judged-relevant abstract: use --claim")
    if not 2 <= args.docs <= len(LABELS) or args.per_doc < 2:
        p.error(f"--docs must be 2-{len(LABELS)} and --per-doc at least 2")
    claim = _common.pick_query(args)

    t0 = time.perf_counter()
    try:
        backend = load_backend("minilm", model=args.model, device=args.device)
    except (ModelLoadError, MissingDependencyError) as exc:
        _common.fail("reranker", exc)
    load_s = time.perf_counter() - t0

    docs = build(
        _common.passages(), claim, n_docs=args.docs, per_doc=args.per_doc, position=args.per_doc - 2
    )
    t0 = time.perf_counter()
    chunk_max, truncated = compare(backend, claim.text, docs)
    took = time.perf_counter() - t0
    target = LABELS[docs.target_doc]
    start, end = docs.target_span

    print(f"query: {claim.text}")
    print(
        f"reranker: {backend!r} (loaded in {load_s:.1f}s, max_length {backend.max_length} tokens)"
    )
    print(
        f"{args.docs} documents of {args.per_doc} SciFact abstracts each "
        f"({min(map(len, docs.texts))}–{max(map(len, docs.texts))} chars); document {target} "
        f"holds the judged-relevant abstract at chars {start}–{end} "
        f"of {len(docs.texts[docs.target_doc])}"
    )
    report("Chunk-max: every window scored, each document keeps its best", chunk_max, docs)
    report("Truncation: WindowConfig(max_windows=1), first window only", truncated, docs)

    best = next(r for r in chunk_max if r.index == docs.target_doc)
    first = next(r for r in truncated if r.index == docs.target_doc)
    rank = [r.index for r in chunk_max].index(docs.target_doc) + 1
    found = overlaps(best.window, docs.target_span)
    print(
        f"\nChunk-max ranks document {target} #{rank} of {args.docs}; its best window "
        f"(chars {best.window[0]}–{best.window[1]}, {best.n_windows} windows scored) "
        f"{'overlaps' if found else 'does not overlap'} the relevant abstract."
    )
    seen = "so truncation never saw it" if first.window[1] <= start else "partly inside it"
    print(
        f"Truncation read only chars {first.window[0]}–{first.window[1]} of document {target} "
        f"(truncated={first.truncated}); the relevant abstract starts at char {start}, {seen}."
    )
    print(f"\nBest window of document {target}:\n  {_common.short(best.window_text, 400)}")
    print(
        f"\n({len(docs.texts)} documents, {sum(r.n_windows for r in chunk_max)} windows, "
        f"scored in {took:.1f}s)"
    )


if __name__ == "__main__":
    main()
