"""Whether the Hugging Face hub can be reached, and the reranker a checkout bundles.

Used by ``crossrank rerank`` (and the examples) before anything is loaded: a machine that
cannot reach the hub is found within about two seconds (or at once when ``HF_HUB_OFFLINE``
is set), instead of after a minute of download retries, and the command can then fall
back to the project's own trained reranker, ``models/crossrank-minilm-l6`` in a checkout
(not in the wheel).
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BUNDLED_NAME",
    "Bundled",
    "bundled_model",
    "go_offline",
    "hub_cached",
    "is_local_path",
    "offline_reason",
]

BUNDLED_NAME = "crossrank-minilm-l6"
_TRUE = ("1", "true", "yes", "on")


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def offline_reason(timeout: float = 2.0) -> str | None:
    """``None`` when the hub answers; else why it cannot be used, as a short phrase.

    ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` count as offline without a probe. The
    probe is one HEAD request to ``$HF_ENDPOINT`` (default https://huggingface.co) through
    the environment's proxies: the hub's front page answers 200 (after redirects); an error
    status (a proxy refusing, a gateway answering for an unreachable address) means the
    downloads would fail too.
    Name resolution has no timeout of its own, so the probe runs in a daemon thread and
    is given up after ``timeout`` + 1 seconds.
    """
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if _env_true(var):
            return f"{var} is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            req = urllib.request.Request(endpoint, method="HEAD")
            with urllib.request.urlopen(req, timeout=timeout):
                pass
            outcome.append(None)
        except urllib.error.HTTPError as exc:  # an answer, but not the hub's front page
            outcome.append(f"{endpoint} answered HTTP {exc.code}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            why = getattr(exc, "reason", exc)
            outcome.append(f"{endpoint} cannot be reached ({why})")

    thread = threading.Thread(target=probe, name="crossrank-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if not outcome:
        return f"{endpoint} did not answer within {timeout + 1.0:.0f} s"
    return outcome[0]


def go_offline() -> None:
    """Make every later Hugging Face load local-only (no retries against an unreachable
    hub). Takes effect for libraries not yet imported, which is the case before a model
    is loaded."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "huggingface" / "hub"


def hub_cached(model_id: str) -> bool:
    """Whether a hub model's ``config.json`` is in the local Hugging Face cache."""
    repo = _hub_cache() / ("models--" + model_id.replace("/", "--"))
    return any((repo / "snapshots").glob("*/config.json"))


def is_local_path(model: str) -> bool:
    """Whether ``model`` can only mean a local directory: an existing path, or one that
    starts with ``/``, ``.`` or ``~``, has more than one ``/``, a backslash, or whose first
    part exists here (``models/x`` beside a ``models`` folder). A hub id is ``name`` or
    ``org/name``."""
    if Path(model).expanduser().exists():
        return True
    if model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1:
        return True
    head, sep, _ = model.partition("/")
    return bool(sep) and Path(head).is_dir()


@dataclass(frozen=True, slots=True)
class Bundled:
    """The reranker a checkout bundles: its directory and its measured quality."""

    path: Path
    summary: str  # one line: what it is and how well it ranks


def bundled_model(root: Path | None = None) -> Bundled | None:
    """``models/crossrank-minilm-l6`` of the checkout this package runs from (or under
    ``root``), when present with its weights; ``None`` in an installed wheel."""
    if root is None:
        root = Path(__file__).resolve().parents[3]  # commands → rerank_core → shared → root
    path = root / "models" / BUNDLED_NAME
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        return None
    summary = BUNDLED_NAME
    try:
        card = json.loads((path / "crossrank.json").read_text(encoding="utf-8"))
        summary = str(card.get("summary") or summary)
    except (OSError, ValueError):
        pass
    return Bundled(path=path, summary=summary)
