#!/usr/bin/env bash
# fedzo with jobs/fedzo/digits.toml into runs/fedzo-digits (NP, MPIEXEC, RUN_DIR: see jobs/launch.sh); re-run to resume.
exec "$(dirname "$0")/../launch.sh" fedzo "$(dirname "$0")/digits.toml" "$@"
