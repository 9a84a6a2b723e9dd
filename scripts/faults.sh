#!/bin/sh
# The whole fault suite (RELIABILITY.md), long runs included: every test marked `soak` or `fuzz`
# and the database faults, ROUNDS times (default 1).
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
    python -m pytest -m "soak or fuzz or not (soak or fuzz)" -p no:randomly -p no:xdist -s -q \
        tests/e2e/test_outages.py tests/e2e/test_kill_soak.py tests/e2e/test_two_workers.py \
        tests/e2e/test_database_faults.py tests/web/test_fuzz.py "$@"
    n=$((n + 1))
done
