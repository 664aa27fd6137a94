"""Benchmark the sans-IO core alone: DIMSE message -> P-DATA-TF PDUs -> bytes -> PDUs -> DIMSE events.

A requestor and an acceptor :class:`Association` are joined by an in-memory byte pipe that behaves like
a socket pair: the sender's ``data_to_send()`` buffers are copied into a fixed receive buffer
(``transport.channel.RECV_SIZE``, as ``Channel._receive`` does with ``recv_into``), and each full buffer
is fed to the acceptor's ``receive_data``; every ``DataReceived`` PDV goes through ``Assembler.receive_pdv``
and every ``DatasetFragment`` is consumed (its length counted) before the next delivery.

The data set is a stream of immutable 1 MiB chunks (the way ``store`` streams a file), so memory must
stay bounded by the PDU size: each size runs in a fresh worker process and its peak RSS
(``ru_maxrss``) is compared with that of a worker that only sets up the association.

Also measures the loopback TCP limit (two processes, 256 KiB ``sendall``/``recv_into``) and prints the
core's throughput as a ratio of it.

    .venv/bin/python bench/core.py                 # 1 GiB and 256 MiB, 16 KiB and 256 KiB PDUs
    .venv/bin/python bench/core.py --size 128M     # scaled down
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
MiB = 1 << 20
GiB = 1 << 30
CHUNK = 1 * MiB
SOCK_CHUNK = 256 * 1024


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def human(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --------------------------------------------------------------------------- the in-memory core path


def _chunks(total: int, pattern: bytes):
    """``total`` bytes as a stream of one reused immutable chunk (never mutated, so reuse is safe)."""
    full, rest = divmod(total, len(pattern))
    for _ in range(full):
        yield pattern
    if rest:
        yield pattern[:rest]


class Pipe:
    """Socket-like one-way byte pipe: copies into a fixed receive buffer, delivers it when full."""

    def __init__(self, deliver, size: int) -> None:
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._size = size
        self._n = 0
        self._deliver = deliver
        self.bytes = 0

    def write(self, buffers) -> None:
        view, size, n = self._view, self._size, self._n
        for buf in buffers:
            mv = buf if isinstance(buf, memoryview) else memoryview(buf)
            length = len(mv)
            self.bytes += length
            pos = 0
            while pos < length:
                k = min(length - pos, size - n)
                view[n:n + k] = mv[pos:pos + k]
                n += k
                pos += k
                if n == size:
                    self._deliver(view)
                    n = 0
        self._n = n

    def flush(self) -> None:
        if self._n:
            self._deliver(self._view[:self._n])
            self._n = 0


def establish(max_pdu: int):
    """A requestor/acceptor pair of DIMSE connections through association negotiation, in memory."""
    from dcmnet_cli.dimse.connection import AssociationAccepted, AssociationRequested, DIMSEConnection, Role
    from dcmnet_cli.ul.negotiation import AcceptorPolicy, build_contexts, build_request, negotiate_acceptor

    ct, explicit = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1"
    rq = build_request("ACC", "REQ", build_contexts([(ct, (explicit,))]), max_pdu)
    req, acc = DIMSEConnection(Role.REQUESTOR, max_pdu), DIMSEConnection(Role.ACCEPTOR, max_pdu)
    acc.connection_made()
    req.request(rq)
    req.connection_made()
    acc.receive_data(b"".join(bytes(b) for b in req.data_to_send()))
    ev = acc.next_event()
    assert isinstance(ev, AssociationRequested), ev
    ac = negotiate_acceptor(ev.request, AcceptorPolicy(ae_title="ACC", contexts={ct: [explicit]}, max_pdu=max_pdu))
    acc.accept(ac)
    req.receive_data(b"".join(bytes(b) for b in acc.data_to_send()))
    assert isinstance(req.next_event(), AssociationAccepted)
    assert req.is_established and acc.is_established and req.association.peer_max_pdu == max_pdu
    return req, acc, 1


def run_core(size: int, max_pdu: int, recv_size: int, verify: bool = False) -> dict:
    """Send one C-STORE-RQ with a ``size``-byte data set through the whole core (the two DIMSE
    connections: fragmenter, UL framing and state table, assembler); return timings."""
    from dcmnet_cli.dimse.commandset import c_store_rq
    from dcmnet_cli.dimse.connection import CommandReceived, DatasetFragment, MessageComplete

    req, acc, cid = establish(max_pdu)
    state = {"got": 0, "crc": 0, "complete": 0, "pdus": 0}

    def deliver(view) -> None:
        acc.receive_data(view)
        got = 0
        while (event := acc.next_event()) is not None:
            kind = type(event)
            if kind is DatasetFragment:
                got += len(event.data)
                if verify:
                    state["crc"] = zlib.crc32(event.data, state["crc"])
            elif kind is MessageComplete:
                state["complete"] += 1
            elif kind is not CommandReceived:
                raise RuntimeError(f"unexpected event {event!r}")
        state["got"] += got

    pipe = Pipe(deliver, recv_size)
    pattern = bytes(range(256)) * (CHUNK // 256)
    t0 = time.perf_counter()
    req.send_message(cid, c_store_rq(1, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4"), _chunks(size, pattern))
    while batch := req.data_to_send():
        # Each PDU opens with one 12-byte bytes object: its header and its first PDV's (fragment.py).
        state["pdus"] += sum(1 for b in batch if type(b) is bytes and len(b) == 12 and b[0] == 0x04)
        pipe.write(batch)
    pipe.flush()
    elapsed = time.perf_counter() - t0
    assert state["got"] == size and state["complete"] == 1, state
    if verify:
        want = 0
        for c in _chunks(size, pattern):
            want = zlib.crc32(c, want)
        assert want == state["crc"], "data set corrupted on the way"
    return {"seconds": elapsed, "pdus": state["pdus"], "wire_bytes": pipe.bytes}


def run_fragment_only(size: int, max_pdu: int) -> dict:
    """The fragmenter alone (no Association, no copy): the upper bound of the send side."""
    from dcmnet_cli.dimse.commandset import c_store_rq
    from dcmnet_cli.dimse.fragment import fragment_message

    pattern = bytes(CHUNK)
    command = c_store_rq(1, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4").encode()
    t0 = time.perf_counter()
    n = 0
    for pdu in fragment_message(1, command, _chunks(size, pattern), max_pdu):
        n += len(pdu)
    return {"seconds": time.perf_counter() - t0}


def worker(args) -> None:
    """Runs in a fresh process so ru_maxrss belongs to this one measurement."""
    size, max_pdu = args.size, args.pdu
    # Imports count in the baseline too.
    importlib.import_module("dcmnet_cli.dimse.connection")
    if args.mode == "baseline":
        establish(max_pdu)
        res = {"seconds": 0.0}
    elif args.mode == "fragment":
        res = run_fragment_only(size, max_pdu)
    else:
        run_core(min(size, 4 * MiB), max_pdu, args.recv, verify=True)  # warm-up + correctness check
        res = run_core(size, max_pdu, args.recv)
    res["maxrss_mib"] = maxrss_mib()
    print(json.dumps(res))


def spawn(mode: str, size: int, max_pdu: int, recv: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--size", str(size), "--pdu", str(max_pdu), "--recv", str(recv)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# --------------------------------------------------------------------------- loopback TCP limit


def _tcp_receiver(port: int, size: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    buf = bytearray(SOCK_CHUNK)
    left = size
    while left:
        n = sock.recv_into(buf, min(SOCK_CHUNK, left))
        if not n:
            raise SystemExit("sender closed early")
        left -= n
    sock.sendall(b"k")
    sock.close()


@contextmanager
def _child_peer(flag: str, *rest: str) -> Iterator[socket.socket]:
    """The connection from a child process running this script with ``flag PORT rest...``; stopped (and
    checked to have exited 0) when the block ends, even on failure."""
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        child = subprocess.Popen([sys.executable, __file__, flag, str(port), *rest])
        try:
            conn, _ = listener.accept()
            with conn:
                yield conn
            if child.wait(timeout=30) != 0:
                raise RuntimeError(f"the {flag} child failed")
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    finally:
        listener.close()


def tcp_limit(size: int) -> float:
    """Seconds to push ``size`` bytes through 127.0.0.1 between two processes (sender waits for an ack)."""
    with _child_peer("--tcp-receiver", "--size", str(size)) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = memoryview(bytes(SOCK_CHUNK))
        full, rest = divmod(size, SOCK_CHUNK)
        t0 = time.perf_counter()
        for _ in range(full):
            conn.sendall(data)
        if rest:
            conn.sendall(data[:rest])
        if conn.recv(1) != b"k":
            raise RuntimeError("no ack from the receiver")
        return time.perf_counter() - t0


def _file_sender(port: int, paths: list[str]) -> None:
    """Each file's bytes through one 1 MiB buffer (``preadv`` + ``sendmsg``), as dcmnet sends large file
    regions to a peer on the same machine; then wait for the receiver's ack."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(MiB)
    view = memoryview(buf)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            offset = 0
            while n := os.preadv(fd, [view], offset):
                sock.sendall(view[:n])
                offset += n
        finally:
            os.close(fd)
    if sock.recv(1) != b"k":
        raise SystemExit("no ack from the receiver")
    sock.close()


def file_limit(paths: list[Path], out_dir: Path) -> float:
    """Seconds to move these files' bytes through 127.0.0.1 into new files under ``out_dir``, with no DICOM
    and no Python in the loop's way: the kernel path of store → listen on one machine (a sender process
    copying each file through one buffer; here ``splice`` socket → pipe → a new file per input, 1 MiB at a
    time). The ceiling for the big corpus's rows, with the same sizes, the same file system and the same
    copies; unlike :func:`tcp_limit`, whose 256 KiB buffers stay in the CPU's cache, every byte comes from
    and goes to memory."""
    import fcntl
    sizes = [p.stat().st_size for p in paths]
    read_end, write_end = os.pipe()
    made: list[Path] = []
    try:
        fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), MiB)
        with _child_peer("--file-sender", *map(str, paths)) as conn:
            t0 = time.perf_counter()
            for n, size in enumerate(sizes):
                target = out_dir / f"bare-file-limit-{os.getpid()}-{n}"
                made.append(target)
                out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    left = size
                    while left:
                        moved = os.splice(conn.fileno(), write_end, min(MiB, left))
                        if not moved:
                            raise RuntimeError("the file sender closed early")
                        left -= moved
                        while moved:
                            moved -= os.splice(read_end, out, moved)
                finally:
                    os.close(out)
            elapsed = time.perf_counter() - t0
            conn.sendall(b"k")
            return elapsed
    finally:
        os.close(read_end)
        os.close(write_end)
        for target in made:
            target.unlink(missing_ok=True)


# --------------------------------------------------------------------------- orchestration


def mbps(size: int, seconds: float) -> float:
    return size / seconds / 1e6 if seconds > 0 else float("inf")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=parse_size, default=GiB, help="largest data set (default 1G); a quarter of it is run too")
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration (median reported)")
    ap.add_argument("--pdus", default="16K,256K", help="maximum PDU lengths to test")
    ap.add_argument("--recv", type=parse_size, default=None, help="pipe receive buffer (default: Channel.RECV_SIZE)")
    ap.add_argument("--worker", choices=("core", "fragment", "baseline"), help=argparse.SUPPRESS)
    ap.add_argument("--pdu", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--tcp-receiver", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--file-sender", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.file_sender:
        _file_sender(int(args.file_sender[0]), args.file_sender[1:])
        return 0
    if args.tcp_receiver:
        _tcp_receiver(args.tcp_receiver, args.size)
        return 0
    if args.recv is None:
        from dcmnet_cli.transport.channel import RECV_SIZE
        args.recv = RECV_SIZE
    if args.worker:
        args.mode = args.worker
        worker(args)
        return 0

    big = args.size
    small = max(big // 4, MiB)
    pdus = [parse_size(p) for p in args.pdus.split(",")]
    print(f"dcmnet sans-IO core benchmark: data set {human(big)} (and {human(small)} for the RSS comparison), "
          f"PDU {', '.join(human(p) for p in pdus)}, pipe recv buffer {human(args.recv)}, "
          f"{args.repeat} runs each, median", flush=True)

    tcp_runs = [tcp_limit(big) for _ in range(args.repeat)]
    tcp_s = statistics.median(tcp_runs)
    tcp_mbps = mbps(big, tcp_s)
    print(f"loopback TCP limit ({human(big)}, 256 KiB sendall/recv_into, 2 processes): "
          f"{tcp_mbps:,.0f} MB/s (runs: {', '.join(f'{mbps(big, s):,.0f}' for s in tcp_runs)})", flush=True)

    rows = []
    for max_pdu in pdus:
        base = spawn("baseline", 0, max_pdu, args.recv)
        frag = [spawn("fragment", big, max_pdu, args.recv) for _ in range(args.repeat)]
        frag_s = statistics.median(r["seconds"] for r in frag)
        for size in (small, big):
            runs = [spawn("core", size, max_pdu, args.recv) for _ in range(args.repeat)]
            secs = statistics.median(r["seconds"] for r in runs)
            rss = max(r["maxrss_mib"] for r in runs)
            row = {
                "max_pdu": max_pdu, "size": size, "runs_s": [r["seconds"] for r in runs], "median_s": secs,
                "mb_per_s": mbps(size, secs), "pdus": runs[0]["pdus"], "us_per_pdu": secs / runs[0]["pdus"] * 1e6,
                "peak_rss_mib": rss, "baseline_rss_mib": base["maxrss_mib"], "rss_growth_mib": rss - base["maxrss_mib"],
                "ratio_to_tcp": mbps(size, secs) / tcp_mbps,
                "fragment_only_mb_per_s": mbps(big, frag_s),
            }
            rows.append(row)
            print(f"  PDU {human(max_pdu):>7}  {human(size):>7}: {row['mb_per_s']:8,.0f} MB/s "
                  f"rss {rss:6.1f} MiB", flush=True)

    print()
    hdr = (f"{'max PDU':>8} {'data set':>9} {'median s':>9} {'MB/s':>8} {'PDUs':>8} {'us/PDU':>7} "
           f"{'peak RSS':>9} {'baseline':>9} {'growth':>7} {'vs TCP':>7} {'frag-only MB/s':>15}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{human(r['max_pdu']):>8} {human(r['size']):>9} {r['median_s']:9.3f} {r['mb_per_s']:8,.0f} "
              f"{r['pdus']:8d} {r['us_per_pdu']:7.1f} {r['peak_rss_mib']:7.1f}Mi {r['baseline_rss_mib']:7.1f}Mi "
              f"{r['rss_growth_mib']:5.1f}Mi {r['ratio_to_tcp']:6.1%} {r['fragment_only_mb_per_s']:15,.0f}")
    print(f"{'TCP':>8} {human(big):>9} {tcp_s:9.3f} {tcp_mbps:8,.0f}   (loopback limit, 256 KiB sendall/recv_into)")
    print()
    for max_pdu in pdus:
        a, b = (next(r for r in rows if r["max_pdu"] == max_pdu and r["size"] == s) for s in (small, big))
        flat = abs(b["peak_rss_mib"] - a["peak_rss_mib"])
        verdict = "does not grow with the data set" if flat < 16 else "GROWS with the data set"
        print(f"RSS, PDU {human(max_pdu)}: {human(small)} -> {a['peak_rss_mib']:.1f} MiB, {human(big)} -> "
              f"{b['peak_rss_mib']:.1f} MiB (delta {b['peak_rss_mib'] - a['peak_rss_mib']:+.1f} MiB): {verdict}")

    OUT.mkdir(exist_ok=True)
    result = {"benchmark": "core", "size": big, "small_size": small, "repeat": args.repeat, "recv_buffer": args.recv,
              "tcp": {"runs_s": tcp_runs, "median_s": tcp_s, "mb_per_s": tcp_mbps}, "rows": rows,
              "python": sys.version.split()[0], "cpus": os.cpu_count()}
    (OUT / "core.json").write_text(json.dumps(result, indent=2))
    print(f"\nwrote {OUT / 'core.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
