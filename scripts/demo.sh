#!/usr/bin/env bash
# dcmnet in one minute: start a listener on a free local port, C-ECHO it once and five times, send it a
# few generated studies, and show what it received (a tree of the stored files) and where. The listener
# is stopped at the end; the received files are kept in $DEMO_DIR (default: a new folder under $TMPDIR
# or /tmp, printed at the end). Exits non-zero if any step fails. Run from the repository root (make demo).
set -euo pipefail

cd "$(dirname "$0")/.."
PY=.venv/bin/python
DCMNET=.venv/bin/dcmnet
STUDIES=2 SERIES=2 IMAGES=3

if [[ -n "${DEMO_DIR:-}" ]]; then
    mkdir -p "$DEMO_DIR"
    tmp=$(cd "$DEMO_DIR" && pwd)
    rm -rf "$tmp/src" "$tmp/received"
else
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcmnet-demo.XXXXXX")
fi
listener=""

cleanup() {
    local status=$?
    if [[ -n "$listener" ]]; then
        kill -TERM "$listener" 2>/dev/null || true
        local listener_status=0
        wait "$listener" 2>/dev/null || listener_status=$?
        if [[ $status -eq 0 && $listener_status -ne 0 ]]; then
            echo "demo: the listener exited with status $listener_status" >&2
            status=$listener_status
        fi
    fi
    if [[ -s "$tmp/listen.log" ]]; then
        echo "--- listener log"
        sed 's/^/    /' "$tmp/listen.log"
    fi
    rm -rf "$tmp/src"
    if [[ $status -eq 0 ]]; then
        echo
        echo "demo: OK. What the listener received is kept in $tmp/received (log: $tmp/listen.log)."
        echo "Look inside a file with dcmdump FILE (DCMTK); remove it all with: rm -r $tmp"
    else
        echo "demo: FAILED (exit $status); files and log kept in $tmp" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '\n$ %s\n' "$*"; "$@"; }

port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')

listen_args=(listen "$port" --bind 127.0.0.1)
with_store=0
store_note=""
if ! "$DCMNET" store --help >/dev/null 2>&1; then
    store_note="no 'store' command yet: skipping the storage part"
elif ! "$DCMNET" listen --help 2>/dev/null | grep -q -- '-od[ ,]'; then
    store_note="'store' exists but 'listen' has no -od option yet: skipping the storage part"
else
    with_store=1
    mkdir -p "$tmp/received"
    listen_args+=(-od "$tmp/received" --filepath '{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm')
fi

echo "\$ $DCMNET ${listen_args[*]} &"
"$DCMNET" "${listen_args[@]}" 2>"$tmp/listen.log" &
listener=$!

# Wait (up to 10 s) until the port accepts a TCP connection, or the listener has died.
"$PY" - "$port" "$listener" <<'PY'
import os, socket, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        sys.exit(0)
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit("demo: the listener exited before accepting connections")
        time.sleep(0.05)
sys.exit(f"demo: nothing accepts connections on 127.0.0.1:{port} after 10 s")
PY

step "$DCMNET" echo 127.0.0.1 "$port"
step "$DCMNET" echo -c 5 "127.0.0.1:$port"

if [[ $with_store -eq 1 ]]; then
    step "$PY" scripts/gen_studies.py "$tmp/src" --studies "$STUDIES" --series "$SERIES" --images "$IMAGES"
    step "$DCMNET" store 127.0.0.1 "$port" "$tmp/src"
    sent=$(find "$tmp/src" -type f -name '*.dcm' | wc -l)
    received=$(find "$tmp/received" -type f -name '*.dcm' | wc -l)
    echo
    echo "received $received of $sent files in $tmp/received:"
    # A tree of what was stored (patient / study / series / instance), without needing tree(1).
    (cd "$tmp/received" && find . -mindepth 1 | LC_ALL=C sort | awk -F/ '{
        indent = ""; for (i = 2; i < NF; i++) indent = indent "    ";
        print "    " indent $NF }')
    [[ $received -eq $sent ]] || { echo "demo: expected $sent files, received $received" >&2; exit 1; }
else
    echo
    echo "($store_note)"
fi
