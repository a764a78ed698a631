#!/usr/bin/env bash
# Creates ./.venv with everything scratchllm needs (idempotent: re-running is a quick no-op).
# torch is pinned to the CPU wheel first so no install path can pull the CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
stamp=.venv/.installed
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) $TORCH_SPEC"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
# pip's "Location … is ignored" lines come from extra index folders in some machines' pip config: noise, filtered.
pip_install() {
  .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip_install "$TORCH_SPEC"
pip_install -e ".[dev]"
echo "$want" > "$stamp"
echo "scratchllm environment ready in .venv"
