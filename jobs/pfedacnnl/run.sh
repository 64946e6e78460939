#!/usr/bin/env bash
# pfedacnnl with jobs/pfedacnnl/digits.toml into runs/pfedacnnl-digits (NP, MPIEXEC, RUN_DIR: see jobs/launch.sh); re-run to resume.
exec "$(dirname "$0")/../launch.sh" pfedacnnl "$(dirname "$0")/digits.toml" "$@"
