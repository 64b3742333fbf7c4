#!/usr/bin/env bash
# The test command.
#
#   bash scripts/test.sh [PYTEST_ARGS...]
#       The locked set: sets up .venv from constraints.txt (scripts/setup.sh --dev) and runs
#       ruff (lint and format check), mypy, the documentation build (mkdocs build --strict, into
#       a temporary folder) and the whole test suite, examples included. Any skipped test of an
#       installed extra fails the run (CROSSRANK_STRICT_SKIPS=1).
#   bash scripts/test.sh --latest [--unbounded] [PYTEST_ARGS...]
#       The newest versions the extras allow, resolved today in a separate, fresh .venv-latest
#       (no constraints file; torch 2.13.0 CPU), then the backend smoke tests (-m smoke). It
#       prints the resolved versions of the key packages and names an upstream break (a package
#       that is installed but fails to import). --unbounded (or CROSSRANK_UNBOUNDED=1) also
#       lifts crossrank's own upper bounds (e.g. transformers<5.24), to see whether they are
#       still needed. --reuse skips the resolve and reruns the smoke tests in the existing
#       .venv-latest. If it passes: bash scripts/lock.sh .venv-latest, then bash scripts/test.sh.
#
# Extra arguments go to pytest. pytest collecting no tests (exit 5) counts as a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
latest=0
reuse=0
unbounded=${CROSSRANK_UNBOUNDED:-0}
while [ $# -gt 0 ]; do
  case "$1" in
    --latest) latest=1; shift ;;
    --unbounded) unbounded=1; shift ;;
    --reuse) reuse=1; shift ;;
    *) break ;;
  esac
done
if [ "$latest" = 0 ] && [ "$unbounded$reuse" != 00 ]; then
  echo "test.sh: --unbounded and --reuse go with --latest" >&2
  exit 2
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server (apt) for the Redis cache tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
    || echo "WARNING: could not install redis-server; the Redis tests will be skipped (and fail the run)"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export CROSSRANK_STRICT_SKIPS=1

run_pytest() {  # $1 = python; the rest go to pytest
  local py=$1 rc=0
  shift
  "$py" -m pytest -q -p no:cacheprovider "$@" || rc=$?
  if [ "$rc" = 5 ]; then
    echo "FAILED: pytest collected no tests (exit 5)" >&2
    return 1
  fi
  return "$rc"
}

if [ "$latest" = 0 ]; then
  bash scripts/setup.sh --dev
  echo "== ruff check"; .venv/bin/ruff check .
  echo "== ruff format --check"; .venv/bin/ruff format --check .
  echo "== mypy (strict)"; .venv/bin/mypy
  echo "== docs (mkdocs build --strict: broken links and API references fail)"
  site=$(mktemp -d)
  # not --quiet: it hides the warnings from --strict's count (a broken link would pass)
  NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir "$site"
  rm -rf "$site"
  echo "== pytest"; run_pytest .venv/bin/python "$@"
  exit $?
fi

# --latest: a fresh venv, resolved today.
PY=${PYTHON:-python3}
venv=.venv-latest
vpy=$venv/bin/python

lifted_requirements() {  # the extras' requirements, one a line, without upper bounds
  "$vpy" - <<'PY'
import re, tomllib
with open("pyproject.toml", "rb") as f:
    data = tomllib.load(f)
groups = list(data["project"]["optional-dependencies"].values()) + [data["dependency-groups"]["dev"]]
for reqs in groups:
    for req in reqs:
        if req.startswith("crossrank["):
            continue
        req, _, marker = req.partition(";")
        m = re.match(r"\s*([A-Za-z0-9._-]+(?:\[[^\]]*\])?)\s*(.*)", req)
        name, spec = m.group(1), m.group(2)
        # keep lower bounds and exclusions; drop <, <=; ~=X and ==X become >=X
        keep = []
        for s in filter(None, (s.strip() for s in spec.split(","))):
            if s.startswith("<"):
                continue
            if s.startswith("~="):
                s = ">=" + s[2:]
            elif s.startswith("==") and not s.startswith("==="):
                s = ">=" + s[2:].removesuffix(".*")
            keep.append(s)
        print(name + ",".join(keep) + (";" + marker if marker else ""))
PY
}

build_latest() {
  local bounds="newest versions the extras allow"
  [ "$unbounded" = 0 ] || bounds+=", crossrank's upper bounds lifted"
  echo "== building a fresh $venv ($bounds)"
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  "$vpy" -m pip install -q --upgrade "pip>=25.1"
  # The CPU build of torch first, so that nothing pulls a multi-GB CUDA build; then one
  # resolution of the extras, the dev group and torch together.
  "$vpy" -m pip install -q "torch==2.13.0"
  if [ "$unbounded" = 0 ]; then
    "$vpy" -m pip install -q -e ".[all]" --group dev "torch==2.13.0"
  else
    local reqs
    mapfile -t reqs < <(lifted_requirements)  # the extras and the dev group
    echo "requirements with upper bounds lifted: ${reqs[*]}"
    "$vpy" -m pip install -q --no-deps -e .
    "$vpy" -m pip install -q "${reqs[@]}" "torch==2.13.0"
  fi
}

if [ "$reuse" = 1 ] && [ -x "$vpy" ]; then
  echo "== reusing $venv as it is (--reuse)"
else
  build_latest
fi

echo "== resolved versions (and whether each imports)"
breaks=$(mktemp)
trap 'rm -f "$breaks"' EXIT
"$vpy" - "$breaks" <<'PY'
import importlib, importlib.metadata as md, sys
breaks = []
key = [  # distribution, import name
    ("torch", "torch"), ("transformers", "transformers"),
    ("sentence-transformers", "sentence_transformers"), ("FlagEmbedding", "FlagEmbedding"),
    ("onnxruntime", "onnxruntime"), ("onnx", "onnx"), ("cohere", "cohere"), ("redis", "redis"),
    ("llama-index-core", "llama_index.core"), ("langchain-core", "langchain_core"),
]
for dist, mod in key:
    try:
        version = md.version(dist)
    except md.PackageNotFoundError:
        print(f"  {dist:24} not installed")
        continue
    try:
        importlib.import_module(mod)
        status = "imports"
    except Exception as exc:  # report, don't stop: pytest below fails on it by name
        status = f"FAILS TO IMPORT: {type(exc).__name__}: {exc}"
        breaks.append(f"{dist} {version} fails to import: {type(exc).__name__}: {exc}")
    print(f"  {dist:24} {version:14} {status}")
with open(sys.argv[1], "w") as f:
    f.writelines(line + "\n" for line in breaks)
PY
"$vpy" -m pip check || echo "WARNING: pip check reports conflicts (above)"

echo "== smoke tests (one real-library test per backend and integration)"
rc=0
# a test module that cannot be imported must not hide the other backends' results
run_pytest "$vpy" -m smoke --continue-on-collection-errors "$@" || rc=$?
label=latest
[ "$unbounded" = 0 ] || label+=" (unbounded)"
if [ -s "$breaks" ]; then
  [ "$rc" != 0 ] || rc=1
  echo "== $label: upstream break(s), with transformers $("$vpy" -c 'import importlib.metadata as m; print(m.version("transformers"))' 2>/dev/null || echo '(absent)'):"
  sed 's/^/   /' "$breaks"
fi
if [ "$rc" = 0 ]; then
  echo "== $label: PASSED; to lock this set: bash scripts/lock.sh $venv && bash scripts/test.sh"
else
  echo "== $label: FAILED (exit $rc); see the import status above and the failures"
fi
exit "$rc"
