#!/usr/bin/env bash
# dho2 with jobs/dho2/digits.toml into runs/dho2-digits (NP, MPIEXEC, RUN_DIR: see jobs/launch.sh); re-run to resume.
exec "$(dirname "$0")/../launch.sh" dho2 "$(dirname "$0")/digits.toml" "$@"
