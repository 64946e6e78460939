#!/usr/bin/env bash
# Run one mpihybrid job into a run directory; run it again and it resumes from the newest
# checkpoint there (so a killed or requeued job just continues).
#
#   jobs/launch.sh ALGO CONFIG.toml [--set KEY=VALUE ...]
#
# Environment (all optional):
#   NP=2                     ranks
#   MPIEXEC=mpiexec          launcher; e.g. "srun --mpi=pmi2" inside a Slurm allocation
#   RUN_DIR=runs/ALGO-NAME   where config.toml, results.h5, checkpoints/ and logs/rank-<r>.log go
#   MPIHYBRID=mpihybrid      the command (e.g. ".venv/bin/mpihybrid")
# The first run copies CONFIG to RUN_DIR/config.toml and records the --set arguments in
# RUN_DIR/overrides (one per line); later runs reuse both, so a requeued job needs no
# arguments repeated. Passing different --set values to an existing RUN_DIR is refused
# (exit 2): start a new RUN_DIR instead. A resumed run must use the same NP.
# Exit code: mpihybrid's (75: stopped by SIGUSR1/SIGTERM after a checkpoint; run again to resume).
# Stale MPICH shared-memory segments of killed runs are removed before and after the run
# (slurm/clean-shm.sh).
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,16p' "$0" >&2
    exit 2
fi
algo=$1
config=$2
shift 2
run_dir=${RUN_DIR:-runs/$algo-$(basename "$config" .toml)}
mkdir -p "$run_dir"
[ -f "$run_dir/config.toml" ] || cp "$config" "$run_dir/config.toml"
if [ -f "$run_dir/overrides" ]; then
    mapfile -t recorded < "$run_dir/overrides"
    if [ $# -gt 0 ] && [ "$*" != "${recorded[*]}" ]; then
        echo "mpihybrid job: $run_dir was started with overrides '${recorded[*]}', not '$*';" \
            "use a new RUN_DIR for other settings" >&2
        exit 2
    fi
    set -- "${recorded[@]}"
else
    : > "$run_dir/overrides"
    [ $# -eq 0 ] || printf '%s\n' "$@" > "$run_dir/overrides"
fi
resume=()
if compgen -G "$run_dir/checkpoints/checkpoint-*.h5" > /dev/null; then
    resume=(--resume)
    echo "mpihybrid job: resuming from the newest checkpoint in $run_dir/checkpoints" >&2
fi
clean_shm="$(dirname "$0")/../slurm/clean-shm.sh"
"$clean_shm"
status=0
# shellcheck disable=SC2086  # MPIEXEC and MPIHYBRID may carry arguments
${MPIEXEC:-mpiexec} -n "${NP:-2}" ${MPIHYBRID:-mpihybrid} run "$algo" --config "$run_dir/config.toml" \
    --out "$run_dir/results.h5" --checkpoint "$run_dir/checkpoints" --log-dir "$run_dir/logs" "${resume[@]}" "$@" ||
    status=$?
"$clean_shm"
exit "$status"
