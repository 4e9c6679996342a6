#!/bin/sh
# Re-measure every stored timing file of the book, then load each through the one loader
# (companion.benchmark.load_results), which refuses a file measured under contention.
#
#   book/data/11_bench_cpu_t1.json    benchmarks/bench.py, 1 thread    about 1.5 min
#   book/data/12_speed_cpu.json       12_speed_sweep.py, 1 thread      about 2.5 min
#   book/data/12_generation_cpu.json  12_lm_sweep.py --generation      about 0.5 min
#   book/data/11_bench_cpu_t2.json    benchmarks/bench.py, 2 threads   about 1.5 min
#
# About 6 minutes in all on the 2-core machine the book's files come from (estimated from the
# earlier runs). Run it from the repository root when NOTHING else runs on the machine: no
# parallel jobs, sweeps, builds, notebooks or browsers. The one-thread runs are pinned to one
# core (the last one) with taskset, so that only that core has to be quiet; the two-thread run
# needs both. Set NOTE to say what else ran, e.g. NOTE="nothing else ran; VM idle".
#
#   sh benchmarks/remeasure.sh
#
# TINY=1 OUT=/tmp/t sh benchmarks/remeasure.sh runs the same pipeline in seconds at tiny sizes
# into OUT (not book/data): a test of the script, whose files a busy machine will see refused.
#
# Exit status 0 only if all four files are accepted. A refused file says which measurement
# failed and by how much; wait for the machine to be quiet and run this again.
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
NOTE=${NOTE:-"re-measured with benchmarks/remeasure.sh on a machine with nothing else running"}
export OMP_NUM_THREADS=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-book/data}
TINY=${TINY:-}
SIZE=""
if [ -n "$TINY" ]; then SIZE="--tiny"; fi
mkdir -p "$OUT"
CORE=$("$PYTHON" -c "import os; print(max(os.sched_getaffinity(0)))")
PIN=""
if command -v taskset >/dev/null 2>&1; then PIN="taskset -c $CORE"; fi
echo "load average before: $(cat /proc/loadavg 2>/dev/null || uptime)"
start=$(date +%s)

$PIN "$PYTHON" benchmarks/bench.py $SIZE --device cpu --threads 1 --note "$NOTE" \
    --out "$OUT/11_bench_cpu_t1.json"
$PIN "$PYTHON" book/scripts/12_speed_sweep.py $SIZE --note "$NOTE" --out "$OUT/12_speed_cpu.json"
$PIN "$PYTHON" book/scripts/12_lm_sweep.py --generation $SIZE --note "$NOTE" \
    --out "$OUT/12_generation_cpu.json"
# two threads last: the one-thread runs leave a load average near 1, well under 2 cores
OMP_NUM_THREADS=2 "$PYTHON" benchmarks/bench.py $SIZE --device cpu --threads 2 --note "$NOTE" \
    --out "$OUT/11_bench_cpu_t2.json"

echo "all four measured in $(( $(date +%s) - start )) s; loading them:"
"$PYTHON" - "$OUT" <<'PY'
import sys

from companion import benchmark

refused = 0
for name in ("11_bench_cpu_t1", "11_bench_cpu_t2", "12_speed_cpu", "12_generation_cpu"):
    try:
        results = benchmark.load_results(f"{sys.argv[1]}/{name}.json")
    except ValueError as err:
        refused += 1
        print(f"REFUSED {err}")
        continue
    print(f"accepted {sys.argv[1]}/{name}.json")
    print(benchmark.conditions_report(results))
sys.exit(1 if refused else 0)
PY
