#!/usr/bin/env bash
# Run every dcmnet benchmark; results print as tables and land in bench/out/*.json.
#   bench/run_all.sh            core at 256 MiB (quick), echo, store --quick
#   FULL=1 bench/run_all.sh     core at 1 GiB (and 256 MiB for the RSS comparison), store on full corpora
#   CORE_SIZE=64M bench/run_all.sh
# Add further benchmarks (store, ...) to the BENCHES list below.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p bench/out

if [[ "${FULL:-0}" == "1" ]]; then
    core_size=${CORE_SIZE:-1G}
    store_flags=""
else
    core_size=${CORE_SIZE:-256M}
    store_flags="--quick"
fi

BENCHES=(
    "core.py --size $core_size"
    "echo.py"
    "store.py $store_flags"
)

status=0
for bench in "${BENCHES[@]}"; do
    echo "=================== bench/$bench"
    # shellcheck disable=SC2086
    if ! $PY bench/$bench; then
        echo "!!! bench/$bench failed" >&2
        status=1
    fi
    echo
done
exit $status
