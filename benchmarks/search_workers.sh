#!/usr/bin/env bash
# Two workers on one search, as a user would run them: on SQLite (two processes on this machine, one output folder)
# and on PostgreSQL (a throwaway cluster on 127.0.0.1, each worker with its own output folder, as on two machines).
# Generated 3-class 40 px images (16 each), 2 backbones x 3 sizes, static int8, 2 epochs per trial, 6 trials.
# Prints what each worker did (its own table) and the lead's report.  Usage: bash benchmarks/search_workers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ET=.venv/bin/edgetransfer
root=$(mktemp -d /tmp/search-workers-XXXX)
chmod 755 "$root"
.venv/bin/python -c "from pathlib import Path; from edgetransfer.builtin_data import write_pattern_folder as w; \
w(Path('$root/data'), per_class=16, classes=3, seed=0)"
fast=(--backbones mobilenet_v2,efficientnet_lite0 --sizes 64,96,128 --int8-methods static --epochs 2 --batch-size 8
      --min-time 0.2 --trials 6 --pruner none)

two_workers() {  # $1: label; then the lead's and the worker's extra options, split by --
  local label=$1; shift
  local lead_opts=() worker_opts=()
  while [[ $1 != -- ]]; do lead_opts+=("$1"); shift; done; shift
  worker_opts=("$@")
  echo "=== $label: lead ==="
  $ET search --data "$root/data" "${fast[@]}" "${lead_opts[@]}" > "$root/$label-lead.out" 2> "$root/$label-lead.err" &
  local lead=$!
  sleep 8  # the lead creates the study, then the worker joins it
  $ET search --worker "${worker_opts[@]}" > "$root/$label-worker.out" 2> "$root/$label-worker.err" &
  local worker=$!
  wait $lead; echo "lead exit $?"; wait $worker; echo "worker exit $?"
  cat "$root/$label-lead.out"
  echo "=== $label: worker ==="
  cat "$root/$label-worker.out"
}

two_workers sqlite --out "$root/sqlite" -- --out "$root/sqlite"

pg=/usr/lib/postgresql/15/bin
if [[ -x $pg/initdb ]] && .venv/bin/python -c "import psycopg2" 2>/dev/null; then
  as=(); [[ $(id -u) == 0 ]] && as=(runuser -u nobody --)
  mkdir -p "$root/pg"; [[ $(id -u) == 0 ]] && chown nobody "$root/pg"
  port=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
  "${as[@]}" $pg/initdb -D "$root/pg/cluster" -U postgres --auth=trust -E UTF8 > /dev/null
  "${as[@]}" $pg/pg_ctl -D "$root/pg/cluster" -l "$root/pg/log" -w start -o "-p $port -h 127.0.0.1 -k $root/pg" \
    > /dev/null
  trap '"${as[@]}" $pg/pg_ctl -D "$root/pg/cluster" -m immediate stop > /dev/null' EXIT
  url="postgresql://postgres@127.0.0.1:$port/postgres"
  two_workers postgresql --out "$root/machine-a/cam" --storage "$url" -- --out "$root/machine-b/cam" --storage "$url"
  echo "machine-a trials: $(ls "$root/machine-a/cam/trials" 2>/dev/null | tr '\n' ' ')"
  echo "machine-b trials: $(ls "$root/machine-b/cam/trials" 2>/dev/null | tr '\n' ' ')"
else
  echo "PostgreSQL part skipped: no $pg/initdb or no psycopg2"
fi
echo "files: $root"
