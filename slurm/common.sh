# Sourced by the slurm/*.sbatch scripts after their settings: load modules, activate the Python
# environment, then run jobs/launch.sh with srun into this job's (or array task's) run directory.
# A requeued job gets the same SLURM_JOB_ID, finds its checkpoints and resumes.
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
export MPIEXEC="srun --mpi=$SRUN_MPI"
export NP=$SLURM_NTASKS
echo "mpihybrid on $SLURM_JOB_NUM_NODES node(s), $NP ranks, run directory $RUN_DIR"
"$SLURM_SUBMIT_DIR/jobs/launch.sh" "$ALGO" "$CONFIG" "$@"
