"""Optional dependencies: import them lazily and tell the truth when they can't be used.

``require("FlagEmbedding", extra="bge")`` returns the module. When the package is absent it
raises :class:`MissingDependencyError` naming the extra to install; when it is installed but
its import fails (a version conflict such as transformers 5.24 breaking FlagEmbedding 1.4.2)
it raises :class:`BrokenDependencyError` with the package, its version, the underlying error
and what to do — never "not installed" for a package that is there.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from types import ModuleType

from .errors import BrokenDependencyError, MissingDependencyError

__all__ = ["installed", "package_version", "require"]

# import name -> distribution name, where they differ
_DISTRIBUTIONS = {
    "sentence_transformers": "sentence-transformers",
    "llama_index": "llama-index-core",
    "llama_index.core": "llama-index-core",
    "langchain_core": "langchain-core",
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "Stemmer": "PyStemmer",
}


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def installed(module: str) -> bool:
    """Whether ``module`` can be found (without importing it). A broken package counts as
    installed: that it fails to import is a separate, louder problem."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        # find_spec imports the parent package of a dotted name; a parent that exists but
        # fails to import is installed (and broken), an absent parent is not installed.
        return importlib.util.find_spec(_top(module)) is not None


def package_version(module: str, package: str | None = None) -> str | None:
    """The installed version of the distribution that provides ``module``, if known."""
    for name in (
        package,
        _DISTRIBUTIONS.get(module),
        _DISTRIBUTIONS.get(_top(module)),
        _top(module),
    ):
        if not name:
            continue
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def require(
    module: str, *, extra: str, package: str | None = None, purpose: str = ""
) -> ModuleType:
    """Import ``module`` or raise a :class:`DependencyError` that says what is wrong.

    ``extra`` is the crossrank extra that installs it; ``package`` the distribution name when
    it differs from the module name; ``purpose`` a few words on what needs it (for the message).
    """
    dist = package or _DISTRIBUTIONS.get(module) or _DISTRIBUTIONS.get(_top(module)) or _top(module)
    what = f"{purpose} needs" if purpose else "this feature needs"
    if not installed(module):
        raise MissingDependencyError(
            f"{what} {dist!r}, which is not installed; "
            f'install it with: pip install "crossrank[{extra}]"',
            extra=extra,
            package=dist,
        )
    try:
        return importlib.import_module(module)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        version = package_version(module, dist)
        detail = f"{type(exc).__name__}: {exc}"
        missing_mod = getattr(exc, "name", None)
        if isinstance(exc, ImportError) and missing_mod and _top(missing_mod) != _top(module):
            dep = _top(missing_mod)
            dep_version = package_version(dep)
            culprit = f"; it needs {missing_mod!r}, which {dep} {dep_version or '(absent)'} lacks"
        else:
            culprit = ""
        err = BrokenDependencyError(
            f"{dist} {version or '(unknown version)'} is installed but fails to import"
            f"{culprit} ({detail}). This is usually a version conflict: install the set the "
            f'tests passed on with: pip install -c constraints.txt "crossrank[{extra}]" '
            f"(from a crossrank checkout), or pin the conflicting package.",
            extra=extra,
            package=dist,
        )
        raise err from exc
