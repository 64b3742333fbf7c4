"""Cascade specs: the short text form of a :class:`~rerank_core.cascade.Cascade`
(``"minilm:model=DIR2,keep=30,fusion=rrf;minilm:model=DIR6"``) or its list-of-dicts form,
parsed and checked without loading any model (backend names, their option names, keeps,
fusion specs, where a pairwise stage may go)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._validate import positive_int
from .errors import ConfigError
from .fusion import parse_fusion

__all__ = ["ENGINE_KEYS", "FUSION_KEY", "PAIRWISE_NAMES", "parse_spec"]

#: Keys of a spec stage that configure its engine (the others go to its backend).
ENGINE_KEYS = frozenset({"batch_size", "max_batch_tokens", "normalize", "on_error"})
#: The key of a spec stage that makes it rank by its score fused with the first stage's.
FUSION_KEY = "fusion"
#: The spec's name for a pairwise last stage (built as ``backends.t5.DuoT5Stage``).
PAIRWISE_NAMES = frozenset({"duot5"})

_INT = re.compile(r"-?\d+")


def _value(raw: str) -> Any:
    if _INT.fullmatch(raw):
        return int(raw)
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return raw


def parse_spec(spec: str | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A cascade spec as ``[{"backend", "keep", "options"}]``, checked without loading
    anything: backend names and their option names (against the backend's constructor),
    ``keep`` on every stage but the last (non-increasing), a ``duot5`` pairwise stage only
    last and after a pointwise stage. A string: stages split by ``;``, each
    ``name[:key=value,...]`` (integers and true/false converted; engine keys
    ``batch_size``, ``max_batch_tokens``, ``normalize``, ``on_error`` go to the stage's
    engine, ``fusion`` (``rrf``, ``rrf:20``, ``linear:0.3``, ``none``) makes the stage rank
    by its score fused with the first stage's, the rest go to its backend). Raises
    ConfigError naming the stage."""
    if isinstance(spec, str):
        raw = [_parse_stage(part, i) for i, part in enumerate(spec.split(";"))]
    elif isinstance(spec, Sequence) and not isinstance(spec, bytes):
        raw = []
        for i, item in enumerate(spec):
            if not isinstance(item, Mapping) or not isinstance(item.get("backend"), str):
                raise ConfigError(f"cascade stage {i} must be a dict with a 'backend' name")
            options = {k: v for k, v in item.items() if k not in ("backend", "keep")}
            raw.append({"backend": item["backend"], "keep": item.get("keep"), "options": options})
    else:
        raise ConfigError(f"a cascade spec must be a string or a list of dicts, got {spec!r:.80}")
    if not raw:
        raise ConfigError("a cascade spec needs at least one stage")
    from .backends import _check_options, backend_class

    pointwise = [st for st in raw if st["backend"] not in PAIRWISE_NAMES]
    if not pointwise:
        raise ConfigError("a cascade needs at least one pointwise stage (e.g. minilm)")
    for i, st in enumerate(raw):
        name, keep, options = st["backend"], st["keep"], st["options"]
        where = f"cascade stage {i} ({name})"
        if name in PAIRWISE_NAMES:
            if i != len(raw) - 1 or i == 0:
                raise ConfigError(f"{where}: a pairwise stage comes last, after a pointwise one")
            if keep is not None:
                raise ConfigError(f"{where}: a pairwise stage takes top_k=, not keep=")
            from .backends.t5 import DuoT5Stage

            _check_options(name, DuoT5Stage, dict(options))
            continue
        last_pointwise = st is pointwise[-1]
        if last_pointwise and keep is not None:
            raise ConfigError(
                f"{where}: the last stage ranks everything it gets; it takes no keep "
                "(cut with top_n)"
            )
        if not last_pointwise:
            positive_int(f"{where}: keep", keep)
        if FUSION_KEY in options:
            try:
                parse_fusion(options[FUSION_KEY])
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        skip = ENGINE_KEYS | {FUSION_KEY}
        backend_options = {k: v for k, v in options.items() if k not in skip}
        _check_options(name, backend_class(name), backend_options)
    keeps = [st["keep"] for st in pointwise[:-1]]
    for a, b in itertools.pairwise(keeps):
        if b > a:
            raise ConfigError(f"cascade keep values must not grow from stage to stage: {keeps}")
    return raw


def _parse_stage(part: str, i: int) -> dict[str, Any]:
    part = part.strip()
    name, _, rest = part.partition(":")
    name = name.strip()
    if not name:
        raise ConfigError(f"cascade stage {i} is empty: write name[:key=value,...] per stage")
    keep: int | None = None
    options: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(f"cascade stage {i} ({name}): expected key=value, got {item!r}")
        value = _value(raw.strip())
        if key == "keep":
            keep = value if isinstance(value, int) and not isinstance(value, bool) else -1
            if keep < 1:
                raise ConfigError(f"cascade stage {i} ({name}): keep must be a positive int")
        elif key in options:
            raise ConfigError(f"cascade stage {i} ({name}): {key} given twice")
        else:
            options[key] = value
    return {"backend": name, "keep": keep, "options": options}
