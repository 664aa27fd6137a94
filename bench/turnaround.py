"""Where the round trip of one C-STORE at a time goes: the time each side holds the turn.

With one request outstanding (storescu, or ``dcmnet store`` without ``--async``), the files/s of a chain is
one over the sum of both sides' turns plus the kernel's hand-offs, so a µs cut anywhere on a turn is a µs
per file; work done after one's own send overlaps the peer's turn and is free (on 2 cores). This runs
the dcmnet side inside a wrapper that time-stamps every read and write of the plain socket
(``Channel._read_plain`` / ``_send_plain``), with DCMTK as the peer, and prints medians and means of:

listen (``storescu`` → ``dcmnet listen``):
  request in → response out   from the read that completed a request to the response's sendmsg: listen's turn
  the response's sendmsg       the syscall (loopback: it runs the peer's TCP receive, and wakes it)
  response out → next read     work after the response (index rows, accounting): overlaps the sender's turn
  waiting in reads             the sender's turn as listen sees it (plus wake-up)
store (``dcmnet store`` → ``storescp --ignore``):
  response in → request out   store's turn
  waiting in reads             storescp's turn as store sees it

Where the two processes run (the same core or not) moves time between "sendmsg" and "waiting" and shifts
every figure by 10-20 µs from one run to the next: compare medians over several runs, before and after in
alternation, and trust changes of that size only with bench/store.py's files/s behind them.

    .venv/bin/python bench/turnaround.py                   # 3 000 small files, listen -od (tmpfs) and store
    .venv/bin/python bench/turnaround.py --tree /tmp/before --listen-flag=--ignore
    .venv/bin/python bench/turnaround.py --corpus ct --listen-flag=--no-index
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import echo  # noqa: E402
import store  # noqa: E402

WRAPPER = r'''
import atexit, json, sys, time
from dcmnet_cli.transport import channel
events = []
clock, cpu = time.perf_counter_ns, time.thread_time_ns
read, send = channel.Channel._read_plain, channel.Channel._send_plain
def timed_read(self, wait):
    start = clock(); count = read(self, wait); events.append(("r", start, clock())); return count
def timed_send(self, buffers):
    start = clock(); count = send(self, buffers); events.append(("s", start, clock())); return count
channel.Channel._read_plain, channel.Channel._send_plain = timed_read, timed_send
record = sys.argv[1]
atexit.register(lambda: json.dump(events, open(record, "w")))
sys.argv = ["dcmnet"] + sys.argv[2:]
from dcmnet_cli.cli.main import main
main()
'''


def _split(events: list[list]) -> dict[str, list[float]]:
    """µs per turn, from the (kind, start, end) records of one process."""
    out: dict[str, list[float]] = {"turn": [], "send": [], "after": [], "wait": []}
    sends = [i for i, e in enumerate(events) if e[0] == "s"]
    for a, b in zip(sends[5:], sends[6:]):  # past the association's set-up
        reads = [e for e in events[a + 1:b] if e[0] == "r"]
        if not reads:
            continue
        out["turn"].append((events[b][1] - reads[-1][2]) / 1000)
        out["send"].append((events[b][2] - events[b][1]) / 1000)
        out["after"].append((reads[0][1] - events[a][2]) / 1000)
        out["wait"].append(sum(r[2] - r[1] for r in reads) / 1000)
    return out


def _print(title: str, split: dict[str, list[float]], labels: dict[str, str]) -> None:
    print(f"{title} ({len(split['turn'])} turns), µs: median / mean")
    for key, label in labels.items():
        values = split[key]
        if values:
            print(f"  {label:<30} {statistics.median(values):7.1f} / {statistics.mean(values):7.1f}")


def listen_side(folder: Path, flags: list[str]) -> dict[str, list[float]]:
    port = echo.free_port()
    record = Path(tempfile.mkstemp(prefix="turnaround-", suffix=".json")[1])
    out = Path(tempfile.mkdtemp(prefix="turnaround-od-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    argv = [echo.PY, "-c", WRAPPER, str(record), "listen", "--bind", echo.HOST, str(port), "-q", "--no-progress",
            *(["-od", str(out), "--no-fsync"] if "--ignore" not in flags else []), *flags]
    server = subprocess.Popen(argv, env=echo.PY_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        echo.wait_port(port, server)
        echo.check_loopback_only(port)
        client = subprocess.run(["storescu", "-pdu", store.DCMTK_PDU, "+sd", echo.HOST, str(port), str(folder)],
                                env=echo.DCMTK_ENV, capture_output=True, text=True)
        if client.returncode != 0:
            raise SystemExit(f"storescu failed: {client.stderr.strip()}")
        server.send_signal(2)
        server.wait(30)
        return _split(json.loads(record.read_text()))
    finally:
        echo.stop(server)
        record.unlink(missing_ok=True)
        shutil.rmtree(out, ignore_errors=True)


def store_side(folder: Path) -> dict[str, list[float]]:
    record = Path(tempfile.mkstemp(prefix="turnaround-", suffix=".json")[1])
    server = store.Server("storescp", "ignore", echo.build_shim())
    try:
        client = subprocess.run([echo.PY, "-c", WRAPPER, str(record), "store", "-q", echo.HOST, str(server.port),
                                 str(folder)], env=echo.PY_ENV, capture_output=True, text=True)
        if client.returncode != 0:
            raise SystemExit(f"dcmnet store failed: {client.stderr.strip()}")
        return _split(json.loads(record.read_text()))
    finally:
        server.stop()
        record.unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, help="files per run (a corpus is generated once): 3 000 small, 300 CT")
    ap.add_argument("--corpus", choices=("small", "ct"), default="small", help="64×64 MR or 512×512 CT (~0.5 MB)")
    ap.add_argument("--tree", help="another checkout's dcmnet_cli")
    ap.add_argument("--listen-flag", action="append", default=[], help="added to dcmnet listen (e.g. --ignore)")
    args = ap.parse_args()
    echo.use_tree(args.tree)
    if args.corpus == "ct":
        spec = store.Spec("ct", args.count or 300, 512, 512, 1, store.CT)
    else:
        spec = store.Spec("small", args.count or 3000, 64, 64, 1, store.MR)
    folder = store.make_corpus(spec)
    _print("storescu → dcmnet listen " + " ".join(args.listen_flag or ["-od (tmpfs) --no-fsync"]),
           listen_side(folder, args.listen_flag),
           {"turn": "request in → response out", "send": "the response's sendmsg",
            "after": "response out → next read", "wait": "waiting in reads"})
    _print("dcmnet store → storescp --ignore", store_side(folder),
           {"turn": "response in → request out", "send": "the request's sendmsg", "wait": "waiting in reads"})


if __name__ == "__main__":
    main()
