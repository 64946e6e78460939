#!/usr/bin/env bash
# fedavg with jobs/fedavg/digits.toml into runs/fedavg-digits (NP, MPIEXEC, RUN_DIR: see jobs/launch.sh); re-run to resume.
exec "$(dirname "$0")/../launch.sh" fedavg "$(dirname "$0")/digits.toml" "$@"
