#!/usr/bin/env bash
# fosi with jobs/fosi/digits.toml into runs/fosi-digits (NP, MPIEXEC, RUN_DIR: see jobs/launch.sh); re-run to resume.
NP=${NP:-1} exec "$(dirname "$0")/../launch.sh" fosi "$(dirname "$0")/digits.toml" "$@"
