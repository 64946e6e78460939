#!/usr/bin/env bash
# dp-adam with jobs/dp-adam/digits.toml into runs/dp-adam-digits (NP, MPIEXEC, RUN_DIR: see jobs/launch.sh); re-run to resume.
exec "$(dirname "$0")/../launch.sh" dp-adam "$(dirname "$0")/digits.toml" "$@"
