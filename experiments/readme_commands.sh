#!/usr/bin/env bash
# Times the README's two commands on a fresh clone (what experiments/default_run.md records).
# Usage: bash experiments/readme_commands.sh [repo]   (run on an otherwise idle machine)
set -u
repo=${1:-$(git rev-parse --show-toplevel)}
dest=$(dirname "$repo")/scratchllm_fresh_clone   # beside the repo, so ../shared is found as in CI
rm -rf "$dest" && git clone -q "$repo" "$dest" && cd "$dest"
/usr/bin/time -f "tests: %e s" bash -c 'bash scripts/setup.sh && .venv/bin/python -m pytest' > tests.log 2>&1
tail -1 tests.log
/usr/bin/time -f "train: %e s" bash -c 'bash scripts/setup.sh && .venv/bin/python -m scratchllm.train' > train.log 2>&1
tail -1 train.log; grep '^result:' train.log
