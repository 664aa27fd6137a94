"""listen's receive path without a socket: the Python cost per object, no kernel noise.

The bytes storescu sends (C-STORE-RQ command PDU, then the data set in P-DATA-TFs of up to 128 KiB, one PDV
each, as ``storescu -pdu 131072`` does) for N objects of bench/store.py's CT corpus, fed to the real
acceptor (negotiation, Session, the Storage SCP) in reads of ``--read`` bytes, as ``recv_into`` would hand
them over. CPU of this process (``time.process_time``) per object, min of ``--reps``:

    .venv/bin/python bench/receive_path.py                  # --ignore and -od (tmpfs, no fsync, no index)
    .venv/bin/python bench/receive_path.py --profile ignore # cProfile of one run
    .venv/bin/python bench/receive_path.py --tree /tmp/before  # another checkout's dcmnet_cli
    .venv/bin/python bench/receive_path.py --corpus small --mode index --instructions  # see below

``--mode index`` is ``-od`` with listen's index, its rows written ``--batch`` at a time by the association
thread (what ~20 ms of small objects make at DCMTK's pace), never by the clock, so a run is the same work
every time. ``--instructions`` counts, with valgrind's callgrind, the instructions this process executes for
``--count`` objects and for twice as many, once each, and prints the difference per object: user-space
work only, but repeatable to ~1 % where CPU time on these shared machines moves by 10-20 % from run to
run (needs valgrind: ``apt-get install valgrind``). Use it to compare two trees (``--tree``) or one change; time still decides (bench/store.py).
"""

from __future__ import annotations

import argparse
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _dataset_of(path: Path) -> tuple[str, str, bytes]:
    """(SOP Class, SOP Instance, data set bytes) of a Part-10 file in explicit VR LE (File Meta skipped)."""
    raw = path.read_bytes()
    meta_len = struct.unpack_from("<I", raw, 140)[0]
    body = raw[144 + meta_len:]
    meta = raw[144:144 + meta_len]

    def uid(tag: bytes) -> str:
        at = meta.index(tag)
        length = struct.unpack_from("<H", meta, at + 6)[0]
        return meta[at + 8:at + 8 + length].rstrip(b"\0 ").decode()

    return uid(b"\x02\x00\x02\x00"), uid(b"\x02\x00\x03\x00"), body


def _pdu(pdvs: list[tuple[int, bytes | memoryview]]) -> bytes:
    parts = []
    for control, data in pdvs:
        parts += [struct.pack(">IBB", len(data) + 2, 1, control), data]
    body = b"".join(parts)
    return struct.pack(">BBI", 0x04, 0, len(body)) + body


def build_stream(files: list[Path], max_pdu: int) -> tuple[bytes, bytes, list[int]]:
    """The A-ASSOCIATE-RQ alone (a sender waits for the AC), then every C-STORE and the release request."""
    from dcmnet_cli.dimse.commandset import c_store_rq
    from dcmnet_cli.ul.negotiation import build_contexts, build_request

    explicit = "1.2.840.10008.1.2.1"
    out = []
    sop_class = ""
    reads = []  # storescu's pattern as listen's reads see it on loopback
    for index, path in enumerate(files):
        sop_class, instance, body = _dataset_of(path)
        out.append(_pdu([(0x03, c_store_rq(index + 1, sop_class, instance).encode())]))
        reads.append(len(out[-1]))
        view = memoryview(body)
        step = max_pdu - 6  # max_pdu: the P-DATA-TF's body (what the AC's maximum length limits)
        size = 0
        for at in range(0, len(view), step):
            last = at + step >= len(view)
            out.append(_pdu([(0x02 if last else 0x00, view[at:at + step])]))
            size += len(out[-1])
        reads += [12, size - 12]
    out.append(bytes.fromhex("050000000004" + "00000000"))
    reads.append(10)
    request = build_request("BENCH", "STORESCU", build_contexts([(sop_class, [explicit])])).encode()
    return request, b"".join(out), reads


def serve(request: bytes, stream: bytes, read: int | list[int], mode: str, out_dir: str | None,
          batch: int = 70) -> tuple[float, bytes]:
    from dcmnet_cli.dimse.connection import AssociationRequested, DIMSEConnection, Role
    from dcmnet_cli.part10.sopclasses import storage_contexts
    from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity
    from dcmnet_cli.services.scp.storage import StorageConfig, StorageSCP
    from dcmnet_cli.services.scp.store_handler import storage_handlers
    from dcmnet_cli.transport.channel import Driver
    from dcmnet_cli.transport.server import answer_request
    from dcmnet_cli.ul.negotiation import AcceptorPolicy

    class Link(Driver):
        carries = True  # as the socket Channel (a tree without carrying ignores this)

        def __init__(self, conn: DIMSEConnection) -> None:
            super().__init__(conn, peer="127.0.0.1:104")
            self.first, self.at, self.sent = request, 0, bytearray()

        def _read(self, wait: float | None) -> int:
            if self.first:
                count = len(self.first)
                self._buf[:count], self.first = self.first, b""
                return count
            into = getattr(self, "_into", self._view)
            size = read if isinstance(read, int) else (sizes.pop() if sizes else 1 << 20)
            chunk = wire[self.at:self.at + min(size, len(into))]
            self.at += len(chunk)
            into[:len(chunk)] = chunk  # the kernel's copy: counted, as recv_into's is in listen
            return len(chunk)

        def _send(self, buffers: list) -> int:
            total = sum(len(piece) for piece in buffers)
            if len(self.sent) < 4096:
                for piece in buffers:
                    self.sent += bytes(piece)
            return total

        def _close_link(self) -> None:
            pass

        def interrupt(self) -> None:
            pass

    wire = memoryview(stream)
    sizes = [] if isinstance(read, int) else read[::-1]
    ignore = mode == "ignore"
    index = None
    if mode == "index":
        import os

        from dcmnet_cli.services.archive import index as index_module

        # Rows written ``batch`` at a time by the association thread (run_due), never by the clock.
        index_module.BATCH_LIMIT, index_module.BATCH_DELAY, index_module.BATCH_GAP = batch, 3600.0, 3600.0
        assert out_dir is not None
        index = index_module.IndexRef(os.path.join(out_dir, ".dcmnet-index.sqlite"), out_dir)
    scp = StorageSCP(StorageConfig(None if ignore else out_dir, fsync=False, ignore=ignore, index=index))
    scp.prepare()
    policy = AcceptorPolicy(ae_title="BENCH", contexts=storage_contexts(ALL_UNCOMPRESSED, False, ALL_UNCOMPRESSED))
    entity = ApplicationEntity(policy, handlers=storage_handlers(scp))
    conn = DIMSEConnection(Role.ACCEPTOR)
    conn.connection_made()
    link = Link(conn)
    started = time.process_time()
    event = link.next_event(None)
    assert type(event) is AssociationRequested
    assert answer_request(link, entity, event.request)
    entity.serve(link)
    cpu = time.process_time() - started
    scp.close(1.0)
    sent = bytes(link.sent)
    if not sent.startswith(b"\x02") or len(sent) < 300 or b"\x07\x00\x00\x00\x00\x04" in sent:
        raise SystemExit(f"the association did not go through: {sent[:300]!r}")
    return cpu, sent


def _check_indexed(out_dir: Path, count: int) -> None:
    import sqlite3

    with sqlite3.connect(out_dir / ".dcmnet-index.sqlite") as conn:
        rows = conn.execute("SELECT count(*) FROM instance").fetchone()[0]
    if rows != count:
        raise SystemExit(f"index: {rows} rows, not {count}")


def instructions(args: argparse.Namespace) -> int:
    """This script under callgrind for ``--count`` and twice as many objects, one run of each mode."""
    import os
    import re
    import subprocess

    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed for --instructions (apt-get install valgrind)")
    modes = args.mode or ["ignore", "od"]
    base = [sys.executable, str(Path(__file__).resolve()), "--reps", "1", "--corpus", args.corpus, "--read",
            str(args.read), "--max-pdu", str(args.max_pdu), "--batch", str(args.batch)] + \
        (["--tree", args.tree] if args.tree else [])
    store_spec = ["--count", str(args.count * 2)]  # the corpus made first, outside callgrind
    subprocess.run(base + store_spec + ["--mode", "ignore"], check=True, capture_output=True)
    def per_object(mode: str) -> float:
        totals = []
        for count in (args.count, args.count * 2):
            out = os.path.join(tmp, f"{mode}-{count}.out")
            subprocess.run(["valgrind", "--tool=callgrind", "-q", f"--callgrind-out-file={out}", *base,
                            "--count", str(count), "--mode", mode], check=True, capture_output=True)
            text = Path(out).read_text(errors="replace")
            totals.append(int(re.search(r"^(?:summary|totals): (\d+)", text, re.M).group(1)))
        return (totals[1] - totals[0]) / args.count

    with tempfile.TemporaryDirectory() as tmp:
        stream = per_object("build")  # reading the corpus and framing it: not listen's work
        for mode in modes:
            per = per_object(mode) - stream
            print(f"{mode:7} {args.corpus}: {per:,.0f} instructions per object (callgrind; {args.count} vs "
                  f"{args.count * 2} objects{', rows written ' + str(args.batch) + ' at a time' if mode == 'index' else ''})")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--read", type=int, default=512 * 1024, help="bytes per read (recv_into's return); "
                    "0: storescu's pattern on loopback (a command PDU, a 12-byte P-DATA header, then the rest)")
    ap.add_argument("--max-pdu", type=int, default=131056, help="the sender's P-DATA-TF body length (listen "
                    "accepts 131056 by default; storescu -pdu 131072 then sends that)")
    ap.add_argument("--tree", help="another checkout's dcmnet_cli")
    ap.add_argument("--mode", action="append", choices=("ignore", "od", "index", "build"),
                    help="default: ignore and od (build: only the stream, what --instructions subtracts)")
    ap.add_argument("--corpus", choices=("ct", "small"), default="ct", help="bench/store.py's corpus")
    ap.add_argument("--batch", type=int, default=70, help="--mode index: rows per index transaction")
    ap.add_argument("--instructions", action="store_true", help="instructions per object (callgrind), see above")
    ap.add_argument("--profile", action="store_true", help="cProfile one run of each mode")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(args.tree).resolve()) if args.tree else str(HERE.parent))
    sys.path.insert(0, str(HERE))
    import store

    if args.instructions:
        return instructions(args)
    spec = store.Spec("ct", 300, 512, 512, 1, store.CT) if args.corpus == "ct" else \
        store.Spec("small", max(2000, args.count), 64, 64, 1, store.MR)
    folder = store.make_corpus(spec)
    files = sorted(folder.glob("*.dcm"))[:args.count]
    if len(files) < args.count:
        raise SystemExit(f"--count {args.count}: the {args.corpus} corpus has {len(files)} files")
    request, stream, pattern = build_stream(files, args.max_pdu)
    read = args.read or pattern
    modes = args.mode or ["ignore", "od"]
    if modes == ["build"]:
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="recvpath-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        for mode in modes:
            runs = []
            for rep in range(args.reps):
                out_dir = tmp / f"{mode}-{rep}"
                out_dir.mkdir()
                if args.profile and rep == 0:
                    import cProfile
                    import pstats
                    profile = cProfile.Profile()
                    profile.enable()
                    serve(request, stream, read, mode, str(out_dir), args.batch)
                    profile.disable()
                    pstats.Stats(profile).sort_stats("tottime").print_stats(25)
                cpu, sent = serve(request, stream, read, mode, str(out_dir), args.batch)
                stored = [p for p in out_dir.iterdir() if not p.name.startswith(".")]
                if mode != "ignore" and len(stored) != args.count:
                    raise SystemExit(f"{mode}: {len(stored)} files, not {args.count}")
                if mode == "index":
                    _check_indexed(out_dir, args.count)
                shutil.rmtree(out_dir)
                runs.append(cpu)
            print(f"{mode:7} {args.count} × {args.corpus}, reads of {args.read or 'storescu pattern'}, PDUs of {args.max_pdu}: "
                  f"{min(runs) / args.count * 1e6:7.1f} µs CPU per object (min of {args.reps}; all: "
                  f"{', '.join(f'{r / args.count * 1e6:.0f}' for r in sorted(runs))})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
