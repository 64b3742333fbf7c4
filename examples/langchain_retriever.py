"""A LangChain retriever over 281 SciFact abstracts, reranked by crossrank.

An ``InMemoryVectorStore`` (a local sentence-transformers bi-encoder) returns 20
candidates. ``RerankRetriever`` wraps that retriever and keeps the best 5 by
cross-encoder score; then the same through langchain-classic's
``ContextualCompressionRetriever`` with ``RerankCompressor``. Both share one engine,
so the second pass is served from its score cache.

    python examples/langchain_retriever.py                           # hub model
    python examples/langchain_retriever.py --model /path/to/cross-encoder
    CROSSRANK_MODEL=/path/to/cross-encoder python examples/langchain_retriever.py
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import _common
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore
from rerank_core import MissingDependencyError, ModelLoadError, Reranker

from langchain_rerank import RerankCompressor, RerankRetriever


class LocalEmbeddings(Embeddings):
    """LangChain embeddings from a loaded sentence-transformers bi-encoder."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(texts, normalize_embeddings=True).tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def show(title: str, docs: list[Document], claim: _common.Claim, was: dict[str, int]) -> None:
    print(f"\n{title}")
    for i, d in enumerate(docs, 1):
        doc_id = str(d.id)
        print(
            f"{i:3d}. {_common.mark(claim, doc_id)} score={d.metadata['relevance_score']:8.4f}  "
            f"(was #{was[doc_id]:<2d}) [{doc_id}] {_common.short(d.metadata['title'], 56)}"
        )


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    _common.add_retrieval_options(p)
    args = p.parse_args()
    claim = _common.pick_query(args)

    # One engine (and one score cache) for both LangChain classes; loaded first so that
    # a model that cannot load fails fast.
    t0 = time.perf_counter()
    try:
        engine = Reranker("minilm", model=args.model, device=args.device)
    except (ModelLoadError, MissingDependencyError) as exc:
        _common.fail("reranker", exc)
    load_s = time.perf_counter() - t0

    docs = [
        Document(page_content=p.body, id=p.id, metadata={"title": p.title})
        for p in _common.corpus(args.limit, claim)
    ]
    embeddings = LocalEmbeddings(_common.load_bi_encoder(args.embed_model, args.device))
    t0 = time.perf_counter()
    store = InMemoryVectorStore.from_documents(docs, embeddings)
    index_s = time.perf_counter() - t0
    base = store.as_retriever(search_kwargs={"k": args.candidates})

    print(f"query: {claim.text}")
    print(f"reranker: {engine.backend!r} (loaded in {load_s:.1f}s)")
    print(f"embeddings: {args.embed_model}")
    print(f"indexed {len(docs)} passages in {index_s:.1f}s")
    if claim.relevant:
        print("(* = judged relevant in SciFact)")

    hits = store.similarity_search_with_score(claim.text, k=args.candidates)
    was = {str(d.id): i for i, (d, _) in enumerate(hits, 1)}
    print(f"\nRetrieved: vector search top {len(hits)}")
    for i, (d, cos) in enumerate(hits, 1):
        print(
            f"{i:3d}. {_common.mark(claim, str(d.id))} cosine={cos:6.3f}  [{d.id}] "
            f"{_common.short(d.metadata['title'], 70)}"
        )

    retriever = RerankRetriever(base_retriever=base, reranker=engine, top_n=args.top_n)
    t0 = time.perf_counter()
    reranked = retriever.invoke(claim.text)
    took = time.perf_counter() - t0
    show(
        f"Reranked: RerankRetriever top {len(reranked)} ({took * 1000:.0f} ms)",
        reranked,
        claim,
        was,
    )

    try:
        from langchain_classic.retrievers import ContextualCompressionRetriever
    except ImportError:
        print("\n(langchain-classic is not installed: skipping ContextualCompressionRetriever)")
        return
    compression = ContextualCompressionRetriever(
        base_compressor=RerankCompressor(reranker=engine, top_n=args.top_n), base_retriever=base
    )
    scored, hits = engine.pairs_scored, engine.cache_stats.hits
    compressed = asyncio.run(compression.ainvoke(claim.text))
    show(
        "Same through ContextualCompressionRetriever + RerankCompressor (async): "
        f"{engine.pairs_scored - scored} pairs scored, "
        f"{engine.cache_stats.hits - hits} from the shared engine's cache",
        compressed,
        claim,
        was,
    )
    same = [d.id for d in compressed] == [d.id for d in reranked]
    print(f"\nsame top {len(compressed)}: {'yes' if same else 'no'}")


if __name__ == "__main__":
    main()
