"""A LlamaIndex query engine over 281 SciFact abstracts, reranked by crossrank.

Vector search (a local sentence-transformers bi-encoder) returns 20 candidates; the
``RerankPostprocessor`` in ``node_postprocessors`` reads each with the query through a
cross-encoder and keeps the best 5. No LLM is needed: the engine runs in
``response_mode="no_text"`` and we print the source nodes.

    python examples/llamaindex_query_engine.py                       # hub model
    python examples/llamaindex_query_engine.py --model /path/to/cross-encoder
    CROSSRANK_MODEL=/path/to/cross-encoder python examples/llamaindex_query_engine.py
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import _common
from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import TextNode
from rerank_core import MissingDependencyError, ModelLoadError

from llamaindex_rerank import RerankPostprocessor


class LocalEmbedding(BaseEmbedding):
    """LlamaIndex embeddings from a loaded sentence-transformers bi-encoder."""

    _model: Any = PrivateAttr()

    def __init__(self, model: Any, name: str) -> None:
        super().__init__(model_name=name, embed_batch_size=64)
        self._model = model

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._model.encode(texts, normalize_embeddings=True).tolist()  # type: ignore[no-any-return]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embedding(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    _common.add_retrieval_options(p)
    args = p.parse_args()
    claim = _common.pick_query(args)

    # The reranker first, so that a model that cannot load fails fast.
    t0 = time.perf_counter()
    try:
        rerank = RerankPostprocessor(
            model=args.model, device=args.device, top_n=args.top_n, keep_retrieval_score=True
        )
    except (ModelLoadError, MissingDependencyError) as exc:
        _common.fail("reranker", exc)
    load_s = time.perf_counter() - t0

    passages = _common.corpus(args.limit, claim)
    nodes = [
        TextNode(
            id_=p.id,
            text=p.body,
            metadata={"title": p.title},
            excluded_embed_metadata_keys=["title"],  # the title is already in the text
            excluded_llm_metadata_keys=["title"],
        )
        for p in passages
    ]
    embed = LocalEmbedding(_common.load_bi_encoder(args.embed_model, args.device), args.embed_model)
    t0 = time.perf_counter()
    index = VectorStoreIndex(nodes, embed_model=embed)
    index_s = time.perf_counter() - t0

    Settings.llm = None  # no LLM: retrieval and reranking only (LlamaIndex uses its MockLLM)
    engine = index.as_query_engine(
        similarity_top_k=args.candidates, node_postprocessors=[rerank], response_mode="no_text"
    )
    retrieved = index.as_retriever(similarity_top_k=args.candidates).retrieve(claim.text)
    t0 = time.perf_counter()
    response = engine.query(claim.text)
    query_s = time.perf_counter() - t0
    reranked = response.source_nodes
    rank_before = {n.node.node_id: i for i, n in enumerate(retrieved, 1)}

    print(f"query: {claim.text}")
    print(f"reranker: {rerank.reranker.backend!r} (loaded in {load_s:.1f}s)")
    print(f"embeddings: {args.embed_model}")
    print(f"indexed {len(nodes)} passages in {index_s:.1f}s")
    if claim.relevant:
        print("(* = judged relevant in SciFact)")
    print(f"\nRetrieved: vector search top {len(retrieved)}")
    for i, n in enumerate(retrieved, 1):
        doc_id = n.node.node_id
        print(
            f"{i:3d}. {_common.mark(claim, doc_id)} cosine={n.score:6.3f}  [{doc_id}] "
            f"{_common.short(n.node.metadata['title'], 70)}"
        )
    print(f"\nReranked: crossrank top {len(reranked)} (query engine, {query_s * 1000:.0f} ms)")
    for i, n in enumerate(reranked, 1):
        doc_id, was = n.node.node_id, rank_before[n.node.node_id]
        print(
            f"{i:3d}. {_common.mark(claim, doc_id)} score={n.score:8.4f}  (was #{was:<2d}) "
            f"[{doc_id}] {_common.short(n.node.metadata['title'], 56)}"
        )

    # The async path gives the same answer; the engine's score cache serves it.
    before = rerank.reranker.pairs_scored
    again = asyncio.run(engine.aquery(claim.text)).source_nodes
    same = [n.node.node_id for n in again] == [n.node.node_id for n in reranked]
    print(
        f"\nasync query: same top {len(again)}: {'yes' if same else 'no'}; "
        f"pairs scored again: {rerank.reranker.pairs_scored - before} "
        f"(cache hits so far: {rerank.reranker.cache_stats.hits})"
    )


if __name__ == "__main__":
    main()
