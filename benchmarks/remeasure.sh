#!/usr/bin/env bash
# Re-measure every ratio of benchmarks/README.md's summary like for like (issue 21), at the default sizes.
#
# Usage: benchmarks/remeasure.sh OUT_DIR [STAGE ...]
#   STAGE: subsample coverage callpeaks bigwig bigwig250 bigwig_signal infer (default: all, in that order)
#
# Every stage runs pinned to 2 cores (taskset -c on the first two CPUs this shell may use), with --threads 2,
# and writes OUT_DIR/STAGE.md (the tables as printed), OUT_DIR/STAGE.json (every sample) and OUT_DIR/STAGE.log
# (progress). Inputs are cached under $CACHE (default ${TMPDIR:-/tmp}/atacdenoise-bench) and reused.
# Run it on an otherwise idle machine, after `make test` or any other load has finished: ~35-40 min on 2 idle
# cores when the inputs are cached, ~5-8 min more when they are made first. Set RUNS to change the repetitions
# of the stages that use 3; QUICK=1 runs every stage at its --quick sizes, once (a smoke run of this script).
# A stage that fails is reported and the next one runs; the exit status is 1 if any failed.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
OUT=$(realpath -m "$1")
shift
STAGES=("$@")
if [[ ${#STAGES[@]} -eq 0 ]]; then
    STAGES=(subsample coverage callpeaks bigwig bigwig250 bigwig_signal infer)
fi

REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
[[ -x $PY ]] || PY=$(command -v python3)
CACHE=${CACHE:-${TMPDIR:-/tmp}/atacdenoise-bench}
RUNS=${RUNS:-3}
QUICK=${QUICK:-}
if [[ -n $QUICK ]]; then
    RUNS=1
fi
CPUS=$("$PY" -c 'import os; print(",".join(map(str, sorted(os.sched_getaffinity(0))[:2])))')
export PYTHONPATH="$REPO/workflow${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$REPO/.venv/bin:$PATH"
mkdir -p "$OUT" "$CACHE"
cd "$REPO"

command -v samtools >/dev/null || { echo "samtools not on PATH (apt-get install -y samtools)" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset not on PATH (util-linux)" >&2; exit 1; }

FAILED=()
run() { # name script args...
    local name=$1 script=$2
    shift 2
    echo "== $name: $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg), CPUs $CPUS" | tee -a "$OUT/remeasure.log"
    local t0=$SECONDS rc=0
    taskset -c "$CPUS" "$PY" "benchmarks/$script" --threads 2 --cache "$CACHE" --json "$OUT/$name.json" \
        ${QUICK:+--quick} "$@" >"$OUT/$name.md" 2>"$OUT/$name.log" || rc=$?
    if [[ $rc -ne 0 ]]; then
        FAILED+=("$name")
        echo "   $name FAILED (exit $rc) after $((SECONDS - t0)) s: see $OUT/$name.log" | tee -a "$OUT/remeasure.log"
    else
        echo "   $name done in $((SECONDS - t0)) s" | tee -a "$OUT/remeasure.log"
    fi
}
big() { # the bigWig sizes, or the quick one
    if [[ -n $QUICK ]]; then echo 5M; else echo "$@"; fi
}

for stage in "${STAGES[@]}"; do
    case $stage in
    subsample) run subsample subsample.py --runs "$RUNS" ;;  # 0.5 / 1.5 / 4 M pairs
    coverage) run coverage coverage.py --runs "$RUNS" --genome-runs 1 ;;  # demo, 5 / 15 / 45 Mb, 4 M-fragment genome
    callpeaks) run callpeaks callpeaks.py --runs "$RUNS" --skip-pybigwig ;;  # 10 / 50 / 250 Mb smooth, 2 / 10 Mb per base
    bigwig) run bigwig bigwig_write.py --runs "$RUNS" --bases $(big 20M 80M) ;;
    bigwig250) run bigwig250 bigwig_write.py --runs 1 --bases $(big 250M) ;;  # libBigWig with zooms: ~2 min a run
    bigwig_signal) run bigwig_signal bigwig_write.py --runs 1 --kind signal --bases $(big 80M) ;;
    infer) run infer infer_cpu.py --runs "$RUNS" ;;  # 0.5 / 1 / 2 Mb, native (50 and 100 kb tiles) and PyTorch
    *)
        echo "unknown stage $stage" >&2
        exit 2
        ;;
    esac
done
echo "all done: $(date -u +%FT%TZ); tables in $OUT/*.md" | tee -a "$OUT/remeasure.log"
if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo "failed: ${FAILED[*]}" | tee -a "$OUT/remeasure.log"
    exit 1
fi
