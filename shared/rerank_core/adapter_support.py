"""What every framework adapter shares, so that an adapter only converts types.

A framework adapter (``llamaindex_rerank``, ``langchain_rerank``, the next one) declares its
serialized fields, emits its framework's events and writes scores into copies of the
framework's objects. The rest is here, so every adapter behaves the same:

* :func:`require_framework` imports the framework or raises a ``DependencyError`` that tells
  the truth (not installed → the extra to install; installed but broken → why).
* :func:`configure` splits an adapter's keywords into its serialized fields and the
  engine/backend options (kept off the object: no ``api_key`` in ``repr`` or JSON) and
  checks them (``ConfigError``) before anything loads; ``Configured.engine()`` then builds
  the engine, or adopts a ready ``Reranker`` (or ``Cascade``). :func:`one_of` checks a
  framework option against its choices the way the core does; :func:`invalid_fields`
  turns the framework's field validation errors into one ``ConfigError``.
* :class:`Cut` is ``top_n``/``min_score`` and the production controls (``confidence_threshold``,
  ``cutoff_scale``, ``deadline_ms``): checked at construction, overridable per call,
  forwarded to ``rerank``/``arerank`` (the engine cuts, flags and stops; adapters never sort).
* :class:`Evidence` is ``return_text``/``window_context_chars``: what text a copy carries
  (the whole text, or the best window with some context) and the :func:`evidence_entries`
  every copy's metadata gets (best window's char span, window count, confidence flag).
* :func:`check_query`, :func:`texts_of` turn framework input into engine input with typed
  errors naming the bad index; :func:`scored_items` pairs each result with its input item and
  the score to write into the copy (``None`` when unscored); :func:`with_entries` is a new
  metadata dict, never the caller's.
* Score fusion (:mod:`~rerank_core.fusion`): the ``fusion`` field (stored as its canonical
  string, e.g. ``"rrf"``, ``"linear:0.3"``, ``"none"``) travels in the :class:`Cut`;
  :meth:`Cut.fuses` says whether a call fuses (the field, else the engine's default), and
  :func:`first_stage_scores` reads the first stage's score of each item (a typed
  ``FirstStageScoreError`` naming the item when one is missing). A fused copy keeps the
  reranker's own score under ``rerank_score`` (:func:`fusion_entries`).
* :class:`RerankEventData` is what an adapter's rerank events carry (query, model name,
  effective ``top_n``); :meth:`RerankEventData.outcome` adds the call's facts (rank-1 score,
  ``low_confidence``, threshold, scale, unscored texts, ``deadline_passed``).

Score scales: the local cross-encoders (``minilm``, ``bge``) return raw logits, Cohere
returns 0–1 relevance; ``normalize="sigmoid"`` maps logits to 0–1. A cutoff is read on the
results' scale unless ``cutoff_scale`` names the scale it was written on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, TypeVar

from ._validate import number, one_of, positive_int
from .cascade import AnyReranker, Cascade
from .deadline import check_deadline_ms
from .deps import require
from .engine import Reranker
from .errors import ConfigError, EmptyQueryError, FirstStageScoreError, InvalidTextError
from .evidence import check_context_chars, evidence_span
from .fusion import parse_fusion
from .scales import CutoffScale, check_cutoff_scale
from .types import RankedText, Ranking

__all__ = [
    "COMMON_FIELDS",
    "DEFAULT_BACKEND",
    "EVIDENCE_KEYS",
    "LOW_CONFIDENCE",
    "RERANK_SCORE",
    "RETURN_TEXT",
    "WINDOW_COUNT",
    "WINDOW_END",
    "WINDOW_START",
    "Configured",
    "Cut",
    "Evidence",
    "EvidenceSpan",
    "RerankEventData",
    "ReturnText",
    "check_query",
    "configure",
    "cut_of",
    "evidence_entries",
    "evidence_of",
    "first_stage_scores",
    "fusion_entries",
    "invalid_fields",
    "one_of",
    "ranked_items",
    "require_framework",
    "scored_items",
    "texts_of",
    "with_entries",
]

T = TypeVar("T")

DEFAULT_BACKEND = "minilm"

#: The serialized fields every adapter has (besides its framework's own).
COMMON_FIELDS = (
    "top_n",
    "min_score",
    "backend",
    "model",
    "device",
    "on_error",
    "confidence_threshold",
    "cutoff_scale",
    "deadline_ms",
    "return_text",
    "window_context_chars",
    "fusion",
)

ReturnText = Literal["document", "window"]
RETURN_TEXT: tuple[ReturnText, ...] = ("document", "window")

#: Metadata keys every copy gets: the best window's char span in the copy's source text,
#: the number of windows scored; ``LOW_CONFIDENCE`` only when a threshold is set.
WINDOW_START = "rerank_window_start"
WINDOW_END = "rerank_window_end"
WINDOW_COUNT = "rerank_window_count"
LOW_CONFIDENCE = "rerank_low_confidence"
EVIDENCE_KEYS = (WINDOW_START, WINDOW_END, WINDOW_COUNT, LOW_CONFIDENCE)
#: With score fusion: the reranker's own score (the copy's score is the fused one).
RERANK_SCORE = "rerank_score"


def require_framework(module: str, *, extra: str, adapter: str) -> ModuleType:
    """Import the framework ``adapter`` plugs into (e.g. ``llama_index.core``).

    Raises ``MissingDependencyError`` naming ``extra`` when it is absent, and
    ``BrokenDependencyError`` (package, version, underlying error) when it is installed
    but fails to import.
    """
    return require(module, extra=extra, purpose=adapter)


# ---------------------------------------------------------------------- options


@dataclass(frozen=True)
class Cut:
    """What to keep of a ranking — the ``top_n`` best, none scoring below ``min_score`` —
    and the call's controls: ``confidence_threshold`` (flag the set when its best score is
    below it), ``cutoff_scale`` (the scale both cutoffs are written on; ``None``: the
    results'), ``deadline_ms`` (stop scoring then; unscored texts follow in input order).

    ``None`` means the engine's default (none, unless the engine sets one). Checked when
    made, so a bad option fails at construction, not at the first query.
    """

    top_n: int | None = None
    min_score: float | None = None
    confidence_threshold: float | None = None
    cutoff_scale: CutoffScale = None
    deadline_ms: float | None = None
    fusion: str | None = None

    def __post_init__(self) -> None:
        positive_int("top_n", self.top_n, allow_none=True)
        number("min_score", self.min_score, allow_none=True)
        number("confidence_threshold", self.confidence_threshold, allow_none=True)
        check_cutoff_scale(self.cutoff_scale)
        check_deadline_ms(self.deadline_ms)
        parse_fusion(self.fusion)

    def override(
        self,
        top_n: int | None = None,
        min_score: float | None = None,
        confidence_threshold: float | None = None,
        deadline_ms: float | None = None,
    ) -> Cut:
        """This cut with per-call values where given."""
        return Cut(
            self.top_n if top_n is None else top_n,
            self.min_score if min_score is None else min_score,
            self.confidence_threshold if confidence_threshold is None else confidence_threshold,
            self.cutoff_scale,
            self.deadline_ms if deadline_ms is None else deadline_ms,
            self.fusion,
        )

    def _options(self) -> dict[str, Any]:
        return {
            "top_n": self.top_n,
            "min_score": self.min_score,
            "confidence_threshold": self.confidence_threshold,
            "cutoff_scale": self.cutoff_scale,
            "deadline_ms": self.deadline_ms,
        }

    def fuses(self, engine: AnyReranker) -> bool:
        """Whether a call fuses scores: this cut's ``fusion``, else the engine's default; a
        ``Cascade`` fuses when any of its stages does (:attr:`Cascade.fuses`)."""
        if isinstance(engine, Cascade):
            return engine.fuses
        if self.fusion is not None:
            return parse_fusion(self.fusion) is not None
        return isinstance(engine, Reranker) and engine.fusion is not None

    def _fusion_options(self, first_stage: Sequence[float] | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.fusion is not None:
            out["fusion"] = self.fusion
        if first_stage is not None:
            out["first_stage_scores"] = first_stage
        return out

    def check(self, engine: AnyReranker) -> None:
        """Check the cutoffs against the engine's score scale now (a ConfigError for a
        probability outside 0–1; the once-per-engine warning for a 0–1 cutoff on logits);
        a ``fusion`` on a ``Cascade`` is a ConfigError (a cascade fuses per stage:
        ``Stage(..., fusion=...)`` or ``fusion=`` in its spec), unless it is ``"none"`` and
        no stage fuses."""
        if (
            isinstance(engine, Cascade)
            and self.fusion is not None
            and (parse_fusion(self.fusion) is not None or engine.fuses)
        ):
            raise ConfigError(
                f"fusion={self.fusion!r} applies to a single Reranker; a Cascade fuses per "
                "stage (Stage(..., fusion='rrf') or fusion=rrf on a spec stage), and the "
                "adapter passes it the first-stage scores itself"
            )
        engine.rerank_many([], **self._options())

    def rerank(
        self,
        engine: AnyReranker,
        query: str,
        texts: Sequence[str],
        first_stage: Sequence[float] | None = None,
    ) -> Ranking:
        """``first_stage``: the items' first-stage scores when :meth:`fuses`."""
        if isinstance(engine, Reranker):
            return engine.rerank(
                query, texts, **self._options(), **self._fusion_options(first_stage)
            )
        return engine.rerank(query, texts, **self._options(), **_scores(first_stage))

    async def arerank(
        self,
        engine: AnyReranker,
        query: str,
        texts: Sequence[str],
        first_stage: Sequence[float] | None = None,
    ) -> Ranking:
        if isinstance(engine, Reranker):
            extra = self._fusion_options(first_stage)
            return await engine.arerank(query, texts, **self._options(), **extra)
        return await engine.arerank(query, texts, **self._options(), **_scores(first_stage))

    def effective_top_n(self, engine: AnyReranker, n_inputs: int) -> int:
        """How many results at most: this cut's, else the engine's, else all inputs."""
        return self.top_n or engine.top_n or n_inputs


def _scores(first_stage: Sequence[float] | None) -> dict[str, Any]:
    """A cascade call's ``first_stage_scores`` argument (none when it does not fuse)."""
    return {} if first_stage is None else {"first_stage_scores": first_stage}


@dataclass(frozen=True)
class EvidenceSpan:
    """Where a copy's evidence lies: the best window's ``start``/``end`` in the copy's
    text, the window count, and ``text``, what the copy should carry (``None``: keep its
    text), which starts at ``text_start`` in the copy's text."""

    start: int
    end: int
    n_windows: int
    text: str | None = None
    text_start: int = 0


@dataclass(frozen=True)
class Evidence:
    """What text a copy carries: ``return_text="document"`` (the whole text, default) or
    ``"window"`` (only the best-scoring window of a long text, widened by
    ``window_context_chars`` on each side and to word boundaries)."""

    return_text: ReturnText = "document"
    window_context_chars: int = 0

    def __post_init__(self) -> None:
        one_of("return_text", self.return_text, RETURN_TEXT)
        check_context_chars(self.window_context_chars)

    def of(self, r: RankedText, content: str | None = None) -> EvidenceSpan:
        """The evidence of result ``r``. ``content``: the copy's own text when the engine
        read a longer text around it (e.g. LlamaIndex's metadata header before the
        content): the span is then moved into ``content`` (kept on ``r.text`` when
        ``content`` is not found in it)."""
        source, offset = r.text, 0
        if content is not None and content != r.text:
            found = r.text.find(content)
            if found >= 0:
                source, offset = content, found
        n = len(source)
        start = min(max(r.window[0] - offset, 0), n)
        end = min(max(r.window[1] - offset, start), n)
        if start == end:  # the window lay outside the content (e.g. only the header)
            start, end = 0, n
        if self.return_text == "document":
            return EvidenceSpan(start, end, r.n_windows)
        s, e = evidence_span(source, (start, end), self.window_context_chars)
        return EvidenceSpan(start, end, r.n_windows, source[s:e], s)


def evidence_entries(span: EvidenceSpan, ranking: Ranking) -> dict[str, Any]:
    """The metadata entries of one copy: the best window's char span and the number of
    windows, and the set's ``rerank_low_confidence`` when a threshold was set."""
    out: dict[str, Any] = {
        WINDOW_START: span.start,
        WINDOW_END: span.end,
        WINDOW_COUNT: span.n_windows,
    }
    if ranking.confidence_threshold is not None:
        out[LOW_CONFIDENCE] = ranking.low_confidence
    return out


@dataclass(frozen=True)
class Configured:
    """:func:`configure`'s result: the adapter's field values (to validate and store) and,
    kept apart, what its engine is made of."""

    fields: dict[str, Any]
    engine_options: dict[str, Any]
    reranker: AnyReranker | None = None

    def engine(self) -> AnyReranker:
        """The adopted ``reranker``, or a new engine built from the options (this loads the
        model, so an adapter calls it after its own fields passed validation)."""
        if self.reranker is not None:
            return self.reranker
        return Reranker(self.fields["backend"], **self.engine_options)


def configure(
    field_names: Collection[str], values: Mapping[str, Any], reranker: AnyReranker | None = None
) -> Configured:
    """Split an adapter's keywords and check them, before anything is loaded.

    ``values`` in ``field_names`` are the adapter's serialized fields; every other keyword
    (``batch_size``, ``window``, ``cache``, ``normalize``, ``api_key``, ...) goes to the
    engine and its backend only. ``None`` values are left to the defaults. The fields to
    store have ``model`` as a string, ``backend`` ``None`` when ``reranker`` was given and
    ``on_error`` the engine's. A ready ``reranker`` is checked against the other options
    (``ConfigError`` for a conflict). ``values`` is not changed.
    """
    fields = {k: v for k, v in values.items() if k in field_names}
    options = {k: v for k, v in values.items() if k not in field_names and v is not None}
    if fields.get("fusion") is not None:  # stored as its canonical string
        fusion = parse_fusion(fields["fusion"])
        fields["fusion"] = fusion.spec() if fusion is not None else "none"
    cut_of(fields)
    evidence_of(fields)
    if isinstance(fields.get("model"), os.PathLike):
        fields["model"] = os.fspath(fields["model"])
    for name in ("model", "device", "on_error"):
        if fields.get(name) is not None:
            options[name] = fields[name]
    backend = fields.get("backend", DEFAULT_BACKEND)
    if reranker is None:
        if not isinstance(backend, str) or not backend:
            raise ConfigError(
                f"backend must be a preset name such as 'minilm', got {backend!r}; "
                "or pass a ready reranker=Reranker(...)"
            )
        fields["on_error"] = options.get("on_error", "raise")
    else:
        _check_adoptable(reranker, backend, options)
        fields["on_error"] = reranker.on_error
        backend, options = None, {}
    fields["backend"] = backend
    return Configured(fields, options, reranker)


def cut_of(fields: Mapping[str, Any]) -> Cut:
    """The :class:`Cut` an adapter's fields describe (checked)."""
    return Cut(
        fields.get("top_n"),
        fields.get("min_score"),
        fields.get("confidence_threshold"),
        fields.get("cutoff_scale"),
        fields.get("deadline_ms"),
        fields.get("fusion"),
    )


def evidence_of(fields: Mapping[str, Any]) -> Evidence:
    """The :class:`Evidence` option an adapter's fields describe (checked)."""
    return Evidence(
        fields.get("return_text") or "document", fields.get("window_context_chars") or 0
    )


def _check_adoptable(reranker: AnyReranker, backend: object, options: Mapping[str, Any]) -> None:
    """A ready ``reranker`` comes with no backend options (a non-default ``backend`` counts)
    and no ``on_error`` other than its own."""
    if not isinstance(reranker, (Reranker, Cascade)):
        raise ConfigError(
            f"reranker must be a rerank_core.Reranker or Cascade, got {type(reranker).__name__}"
        )
    given = [k for k in options if k != "on_error"]
    if backend not in (None, DEFAULT_BACKEND):
        given.append("backend")
    if given:
        raise ConfigError(
            "pass either reranker= or backend options, not both; "
            f"got reranker= with {', '.join(sorted(given))}"
        )
    on_error = options.get("on_error")
    if on_error is not None and on_error != reranker.on_error:
        raise ConfigError(
            f"on_error={on_error!r} differs from the given reranker's on_error="
            f"{reranker.on_error!r}; set it on the Reranker"
        )


def invalid_fields(owner: str, errors: Iterable[Mapping[str, Any]]) -> ConfigError:
    """One ``ConfigError`` line for a framework's field validation errors (pydantic's
    ``ValidationError.errors()``: dicts with ``loc`` and ``msg``), naming each field."""
    problems = "; ".join(
        f"{'.'.join(str(part) for part in e.get('loc', ())) or 'value'}: {e.get('msg', e)}"
        for e in errors
    )
    return ConfigError(f"{owner}: {problems}")


# ---------------------------------------------------------------------- conversion


def check_query(query: object) -> str:
    """``query`` if it is a non-blank string (checked before any framework event or
    first-stage call), else ``EmptyQueryError``."""
    if not isinstance(query, str) or not query.strip():
        raise EmptyQueryError(f"query must be a non-blank string, got {query!r:.80}")
    return query


def texts_of(
    items: Sequence[object], kind: type[T], text: Callable[[T], str], *, name: str, what: str
) -> list[str]:
    """``text(item)`` for each item; an item that is not a ``kind`` is an
    ``InvalidTextError`` naming its index as ``{name}[i]`` and ``what`` it must be."""
    texts = []
    for i, item in enumerate(items):
        if not isinstance(item, kind):
            raise InvalidTextError(
                f"{name}[{i}] must be {what}, got {type(item).__name__}", index=i
            )
        texts.append(text(item))
    return texts


def scored_items(
    items: Sequence[T], ranked: Sequence[RankedText]
) -> Iterator[tuple[T, float | None]]:
    """``(input item, score for its copy)`` per result, best first; the score is ``None``
    for an item the engine could not score (``on_error="passthrough"``)."""
    for r in ranked:
        yield items[r.index], (r.score if r.scored else None)


def ranked_items(
    items: Sequence[T], ranked: Sequence[RankedText]
) -> Iterator[tuple[T, RankedText, float | None]]:
    """``(input item, result, score for its copy)`` per result, best first; the score is
    ``None`` for an item the engine did not score (passthrough, or a deadline passed)."""
    for r in ranked:
        yield items[r.index], r, (r.score if r.scored else None)


def first_stage_scores(
    items: Sequence[T], score: Callable[[T], object], *, name: str, what: str
) -> list[float]:
    """The first-stage score of each item (``score(item)``), for score fusion; a missing
    (``None``) or non-numeric one is a ``FirstStageScoreError`` naming ``{name}[i]`` and
    ``what`` should hold it."""
    out = []
    for i, item in enumerate(items):
        value = score(item)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FirstStageScoreError(
                f"score fusion needs the first stage's score of every item: {name}[{i}] has "
                f"{what} = {value!r:.40} (pass fusion='none' to rerank without it)",
                index=i,
            )
        out.append(float(value))
    return out


def fusion_entries(r: RankedText) -> dict[str, Any]:
    """The metadata entry of a fused copy: the reranker's own score under
    ``rerank_score`` (empty without fusion)."""
    return {RERANK_SCORE: r.rerank_score} if r.rerank_score is not None else {}


def with_entries(metadata: Mapping[str, Any], **entries: Any) -> dict[str, Any]:
    """A new metadata dict: ``metadata``'s entries plus ``entries`` (the caller's dict stays
    as it was)."""
    return {**metadata, **entries}


# ---------------------------------------------------------------------- events


@dataclass(frozen=True)
class RerankEventData:
    """What an adapter's rerank events report: the query, the model's name and the most
    results the call can return."""

    query: str
    model_name: str
    top_n: int

    @classmethod
    def of(
        cls, engine: AnyReranker, query: str, cut: Cut, n_inputs: int, model: str | None = None
    ) -> RerankEventData:
        """``model``: the adapter's ``model`` field, else the engine's ``describe()``
        model id, else the backend's class name."""
        name = model or engine.describe().get("model_id") or type(engine.backend).__name__
        return cls(query, str(name), cut.effective_top_n(engine, n_inputs))

    def outcome(self, ranking: Ranking) -> dict[str, Any]:
        """This data plus the call's facts (``top_score`` — the rank-1 score — and
        ``low_confidence``, ``confidence_threshold``, ``score_scale``, ``unscored``,
        ``deadline_passed``): what the end-of-rerank event records."""
        return {
            "query": self.query,
            "model_name": self.model_name,
            "top_n": self.top_n,
            **ranking.facts(),
        }
