#!/usr/bin/env bash
# fedacnnl with jobs/fedacnnl/digits.toml into runs/fedacnnl-digits (NP, MPIEXEC, RUN_DIR: see jobs/launch.sh); re-run to resume.
exec "$(dirname "$0")/../launch.sh" fedacnnl "$(dirname "$0")/digits.toml" "$@"
