#!/bin/sh
# The long fault-injection runs (RELIABILITY.md): every test marked `soak`, ROUNDS times (default 1).
# Figures are printed and appended, one JSON line per run, to FAULT_FIGURES (default
# fault-figures.jsonl). FAULT_SEED=N replays one run's random choices.
#   scripts/faults.sh                 # every long fault test once
#   ROUNDS=6 scripts/faults.sh -k kill_9   # six kill -9 soaks of 1,000 orders and 7 kills
set -eu
cd "$(dirname "$0")/.."
export FAULT_FIGURES="${FAULT_FIGURES:-$PWD/fault-figures.jsonl}"
rounds="${ROUNDS:-1}"
n=1
while [ "$n" -le "$rounds" ]; do
    echo "== round $n of $rounds (figures: $FAULT_FIGURES)"
    python -m pytest -m soak -p no:randomly -p no:xdist -s -q tests/e2e "$@"
    n=$((n + 1))
done
