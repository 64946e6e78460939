#!/bin/bash
# Remove this user's MPICH shared-memory segments (/dev/shm/mpich_shm_*) that no live process maps.
# A job killed or aborted leaves its segment behind, and MPICH names it after the job and step, so a
# requeued Slurm job would attach to the stale one and fail in MPI_Init. Segments still mapped (a
# running job's) are kept. jobs/launch.sh runs this before and after every run; the sbatch scripts
# run it on every node of a multi-node job. Prints what it removed.
set -u
shopt -s nullglob
segments=(/dev/shm/mpich_shm_*)
[ ${#segments[@]} -gt 0 ] || exit 0
mapped=$(cat /proc/[0-9]*/maps 2> /dev/null | grep -o '/dev/shm/mpich_shm_[^ ]*' | sort -u)
for f in "${segments[@]}"; do
    [ -O "$f" ] || continue
    if ! grep -qxF "$f" <<< "$mapped"; then
        rm -f "$f" && echo "mpihybrid: removed stale $f"
    fi
done
exit 0
