# Sourced by the slurm/*.sbatch scripts after their settings: load modules, activate the Python
# environment, then run jobs/launch.sh with srun into this job's (or array task's) run directory.
# A requeued job gets the same SLURM_JOB_ID, finds its checkpoints and resumes.
# Interruption: the scripts ask for SIGUSR1 ahead of the time limit (--signal=USR1@120); on it, or
# on SIGTERM (scontrol requeue, preemption), every rank stops after its current step, writes a
# checkpoint and exits 75. On 75 this script requeues the job (REQUEUE=0 to leave it ended).
set -euo pipefail
if [ -n "${MODULES:-}" ]; then
    # shellcheck disable=SC2086
    module load $MODULES
fi
if [ -n "${MPIHYBRID_ENV:-}" ]; then
    # shellcheck disable=SC1091
    source "$MPIHYBRID_ENV/bin/activate"
fi
cd "$SLURM_SUBMIT_DIR"
job_dir=${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}
export RUN_DIR=${RUN_DIR:-$RUNS/$SLURM_JOB_NAME-$job_dir${SLURM_ARRAY_TASK_ID:+/task-$SLURM_ARRAY_TASK_ID}}
# A rank that dies ends the step at once instead of leaving the others waiting in a collective.
export MPIEXEC="srun --mpi=$SRUN_MPI --kill-on-bad-exit=1"
export NP=$SLURM_NTASKS
echo "mpihybrid on $SLURM_JOB_NUM_NODES node(s), $NP ranks, run directory $RUN_DIR (restart ${SLURM_RESTART_COUNT:-0})"
if [ "${SLURM_JOB_NUM_NODES:-1}" -gt 1 ]; then  # launch.sh cleans this node; the others need a step of their own
    srun -N "$SLURM_JOB_NUM_NODES" -n "$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 --mpi=none \
        "$SLURM_SUBMIT_DIR/slurm/clean-shm.sh"
fi
status=0
"$SLURM_SUBMIT_DIR/jobs/launch.sh" "$ALGO" "$CONFIG" "$@" || status=$?
if [ "$status" -eq 75 ] && [ "${REQUEUE:-1}" = 1 ]; then
    echo "mpihybrid: interrupted after a checkpoint; requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
