#!/usr/bin/env bash
# The part of the tox matrix (tox.ini) that CI runs: a fixed selection, the same every run, that
# covers every Django line and every Python once and each django-allauth bound twice (tox.ini's
# header says why these four). Two environments at a time, one per core: about 6 minutes.
#
#   bash scripts/tox-ci.sh                 what CI runs
#   bash scripts/tox-ci.sh --dry-run       print the selection and stop
#   tox                                    the whole matrix (about 25 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."

SELECTED=(
  py310-dj42-allautholdest
  py311-dj52-allauthnewest
  py312-dj60-allautholdest
  py313-dj61-allauthnewest
)

make -s .venv/bin/.installed   # tox comes with the dev extra
tox=.venv/bin/tox

# A name that tox.ini no longer declares would make tox build an environment of its own guessing;
# refuse it instead.
declared=$("$tox" -qq list --no-desc)
for env in "${SELECTED[@]}"; do
  if ! grep -qx -- "$env" <<<"$declared"; then
    echo "tox-ci: $env is not in tox.ini's env_list" >&2
    exit 1
  fi
done
envs=$(IFS=,; echo "${SELECTED[*]}")
echo "tox-ci: $envs"
if [[ "${1:-}" == "--dry-run" ]]; then
  exit 0
fi

# tox looks for python3.X on PATH; pyenv's shims only answer for the active version, so name
# pyenv's interpreters explicitly where pyenv is how this machine has them.
discover=()
if command -v pyenv >/dev/null; then
  for python in "$(pyenv root)"/versions/3.1[0-9]*/bin/python3; do
    [[ -x "$python" ]] && discover+=("$python")
  done
fi

# The PostgreSQL tests run in `make test`; here they would share one test database across the
# parallel environments, so leave them out. A missing interpreter fails the run (never skipped).
# Each environment leaves its coverage data in the checkout's root for `make test` to combine.
env -u CLOUDSYNC_TEST_POSTGRES_URL "$tox" run-parallel --parallel 2 --parallel-no-spinner \
  --skip-missing-interpreters false ${discover[@]+--discover "${discover[@]}"} -e "$envs"
