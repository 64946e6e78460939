#!/usr/bin/env bash
# decomfl with jobs/decomfl/digits.toml into runs/decomfl-digits (NP, MPIEXEC, RUN_DIR: see jobs/launch.sh); re-run to resume.
exec "$(dirname "$0")/../launch.sh" decomfl "$(dirname "$0")/digits.toml" "$@"
