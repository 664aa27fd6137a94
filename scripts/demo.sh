#!/usr/bin/env bash
# dcmnet in one minute, then a test PACS in one command. Starts a listener on a free local port, C-ECHOes
# it, stores a few generated studies to it and shows the tree of what it received; then uses that same
# listener as a PACS: finds the studies, gets them back into another folder (C-GET), moves them to a
# second listener (C-MOVE), and compares every copy with what was sent. Both listeners are stopped at
# the end; everything is kept in $DEMO_DIR (default: a new folder under $TMPDIR or /tmp, printed at the
# end). Every step is printed as the command a user could type; a step that fails, or a service that
# this dcmnet does not have yet, stops the demo with a non-zero exit and says which.
# Run from the repository root (make demo).
set -euo pipefail

cd "$(dirname "$0")/.."
PY=.venv/bin/python
DCMNET=.venv/bin/dcmnet
STUDIES=2 SERIES=2 IMAGES=3

if [[ -n "${DEMO_DIR:-}" ]]; then
    mkdir -p "$DEMO_DIR"
    tmp=$(cd "$DEMO_DIR" && pwd)
    rm -rf "$tmp/src" "$tmp/received" "$tmp/got" "$tmp/moved" "$tmp/studies.json" "$tmp/listen.log" "$tmp/second.log"
else
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcmnet-demo.XXXXXX")
fi
listener="" second=""

stop() {  # stop one listener (SIGTERM: it finishes, prints its summary, exits 0); its exit status
    local pid=$1 status=0
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || status=$?
    return "$status"
}

cleanup() {
    local status=$? pid code
    for pid in $listener $second; do
        code=0
        stop "$pid" || code=$?
        if [[ $status -eq 0 && $code -ne 0 ]]; then
            echo "demo: a listener exited with status $code" >&2
            status=$code
        fi
    done
    for log in listen.log second.log; do
        if [[ -s "$tmp/$log" ]]; then
            echo "--- $log"
            sed 's/^/    /' "$tmp/$log"
        fi
    done
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

# A command line as a user would type it: dcmnet for .venv/bin/dcmnet, words with shell characters quoted.
shown() {
    local word line=""
    for word in "$@"; do
        [[ $word == "$DCMNET" ]] && word=dcmnet
        [[ $word =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]] || word="'$word'"
        line+="${line:+ }$word"
    done
    printf '%s' "$line"
}

# One step: print it as a user would type it, run it, stop on failure.
# `step -o FILE cmd...` sends the command's stdout to FILE (and shows it).
step() {
    local out="" code=0
    if [[ $1 == -o ]]; then out=$2; shift 2; fi
    local shown
    shown=$(shown "$@")
    printf '\n$ %s%s\n' "$shown" "${out:+ > $out}"
    if [[ -n $out ]]; then  # (stderr into stdout: one stream, in order)
        "$@" 2>&1 >"$out" || code=$?
        sed 's/^/    /' "$out"
    else
        "$@" 2>&1 || code=$?
    fi
    if [[ $code -ne 0 ]]; then
        echo "demo: this step failed with exit $code: $shown" >&2
        exit "$code"
    fi
}

# A service this dcmnet lacks stops the demo here, saying what is missing.
need_option() {  # COMMAND OPTION WHAT
    if ! "$DCMNET" "$1" --help 2>/dev/null | grep -q -- "$2"; then
        echo "demo: 'dcmnet $1' has no $2 option: this dcmnet has no $3 yet" >&2
        exit 1
    fi
}

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

# Wait (up to 10 s) until PORT accepts a TCP connection, or the listener PID has died.
wait_listening() {
    "$PY" - "$1" "$2" <<'PY'
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
}

count_files() { find "$1" -type f -name '*.dcm' | wc -l | tr -d ' '; }

need_option store --help "C-STORE SCU ('store')"
need_option listen '-od[ ,]' "storage in 'listen' (-od)"
need_option listen --index "index and C-FIND SCP in 'listen' (issue 11)"
need_option listen --move-destination "C-MOVE SCP in 'listen' (issue 11)"
need_option find --json "'find --json'"
need_option get --from-json "C-GET SCU ('get --from-json')"
need_option move --from-json "C-MOVE SCU ('move --from-json')"

port=$(free_port)
second_port=$(free_port)
mkdir -p "$tmp/received" "$tmp/got" "$tmp/moved"

echo "# A test PACS: stores below $tmp/received, keeps an index there, answers C-FIND, C-GET and C-MOVE,"
echo "# and knows one move destination, SECOND, the other listener."
listen_args=(listen "$port" --bind 127.0.0.1 -aet PACS -od "$tmp/received"
             --filepath '{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm'
             --move-destination "SECOND=127.0.0.1:$second_port")
echo "\$ $(shown "$DCMNET" "${listen_args[@]}") &"
"$DCMNET" "${listen_args[@]}" 2>"$tmp/listen.log" &
listener=$!
second_args=(listen "$second_port" --bind 127.0.0.1 -aet SECOND -od "$tmp/moved")
echo "\$ $(shown "$DCMNET" "${second_args[@]}") &"
"$DCMNET" "${second_args[@]}" 2>"$tmp/second.log" &
second=$!
wait_listening "$port" "$listener"
wait_listening "$second_port" "$second"

step "$DCMNET" echo 127.0.0.1 "$port"
step "$DCMNET" echo -c 5 "127.0.0.1:$port"

step "$PY" scripts/gen_studies.py "$tmp/src" --studies "$STUDIES" --series "$SERIES" --images "$IMAGES"
step "$DCMNET" store 127.0.0.1 "$port" "$tmp/src"
sent=$(count_files "$tmp/src")
received=$(count_files "$tmp/received")
echo
echo "received $received of $sent files in $tmp/received:"
# A tree of what was stored (patient / study / series / instance), without needing tree(1).
(cd "$tmp/received" && find . -mindepth 1 -not -name '.*' | LC_ALL=C sort | awk -F/ '{
    indent = ""; for (i = 2; i < NF; i++) indent = indent "    ";
    print "    " indent $NF }')
[[ $received -eq $sent ]] || { echo "demo: expected $sent files, received $received" >&2; exit 1; }

echo
echo "# The listener is a PACS now: query it, retrieve from it, send from it elsewhere."
step "$DCMNET" find 127.0.0.1 "$port" -k 'PatientName=TEST*' -k StudyDate -k NumberOfStudyRelatedInstances
step -o "$tmp/studies.json" "$DCMNET" find 127.0.0.1 "$port" -k 'PatientName=TEST*' --json
step "$DCMNET" get 127.0.0.1 "$port" -od "$tmp/got" --from-json "$tmp/studies.json"
step "$DCMNET" move 127.0.0.1 "$port" --dest SECOND --from-json "$tmp/studies.json"
step "$PY" scripts/compare_dicom.py "$tmp/src" "$tmp/received" "$tmp/got" "$tmp/moved"

printf '\n$ kill %%1 %%2    # stop both listeners: each prints a summary and exits 0\n'
for pid in "$listener" "$second"; do
    code=0
    stop "$pid" || code=$?
    [[ $code -eq 0 ]] || { echo "demo: a listener exited with status $code" >&2; exit "$code"; }
done
listener="" second=""
