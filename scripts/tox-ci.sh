#!/usr/bin/env bash
# The part of the tox matrix (tox.ini) that CI runs: the oldest and the newest corner every time,
# plus TOX_CI_ROTATING (default 2) other environments chosen by the day of the year, so that every
# environment of the matrix runs at least once every ceil(others / TOX_CI_ROTATING) days (10 days
# for the 20 others of today's matrix). Two environments at a time, one per core.
#
#   bash scripts/tox-ci.sh                 what CI runs
#   TOX_CI_DAY=17 bash scripts/tox-ci.sh   the selection of day 17, to reproduce a failure
#   TOX_CI_ROTATING=20 bash scripts/tox-ci.sh   the whole matrix (about 25 minutes on 2 cores)
#   bash scripts/tox-ci.sh --dry-run       print the selection and stop
set -euo pipefail
cd "$(dirname "$0")/.."

OLDEST=py310-dj42-allautholdest
NEWEST=py313-dj61-allauthnewest
rotating=${TOX_CI_ROTATING:-2}
day=$((10#${TOX_CI_DAY:-$(date -u +%j)}))   # 10#: the day of the year is zero-padded (008), not octal

make -s .venv/bin/.installed   # tox comes with the dev extra
tox=.venv/bin/tox

# The matrix as tox.ini declares it (py* environments), less the two corners.
mapfile -t others < <("$tox" -qq list --no-desc | grep '^py' | grep -vx -e "$OLDEST" -e "$NEWEST")
selected=("$OLDEST" "$NEWEST")
for ((i = 0; i < rotating && i < ${#others[@]}; i++)); do
  selected+=("${others[$(((day * rotating + i) % ${#others[@]}))]}")
done
envs=$(IFS=,; echo "${selected[*]}")
echo "tox-ci: day $day of the year: $envs"
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
env -u CLOUDSYNC_TEST_POSTGRES_URL "$tox" run-parallel --parallel 2 --parallel-no-spinner \
  --skip-missing-interpreters false ${discover[@]+--discover "${discover[@]}"} -e "$envs"
