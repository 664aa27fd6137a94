"""listen's receive path for CT-sized objects without a socket: the Python cost per object, no kernel noise.

The bytes storescu sends (C-STORE-RQ command PDU, then the data set in P-DATA-TFs of up to 128 KiB, one PDV
each, as ``storescu -pdu 131072`` does) for N objects of bench/store.py's CT corpus, fed to the real
acceptor (negotiation, Session, the Storage SCP) in reads of ``--read`` bytes, as ``recv_into`` would hand
them over. CPU of this process (``time.process_time``) per object, min of ``--reps``:

    .venv/bin/python bench/receive_path.py                  # --ignore and -od (tmpfs, no fsync, no index)
    .venv/bin/python bench/receive_path.py --profile ignore # cProfile of one run
    .venv/bin/python bench/receive_path.py --tree /tmp/before  # another checkout's dcmnet_cli
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


def serve(request: bytes, stream: bytes, read: int | list[int], mode: str, out_dir: str | None) -> tuple[float, bytes]:
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
    scp = StorageSCP(StorageConfig(None if ignore else out_dir, fsync=False, ignore=ignore))
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--read", type=int, default=512 * 1024, help="bytes per read (recv_into's return); "
                    "0: storescu's pattern on loopback (a command PDU, a 12-byte P-DATA header, then the rest)")
    ap.add_argument("--max-pdu", type=int, default=131056, help="the sender's P-DATA-TF body length (listen "
                    "accepts 131056 by default; storescu -pdu 131072 then sends that)")
    ap.add_argument("--tree", help="another checkout's dcmnet_cli")
    ap.add_argument("--mode", action="append", choices=("ignore", "od"), help="default: both")
    ap.add_argument("--profile", action="store_true", help="cProfile one run of each mode")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(args.tree).resolve()) if args.tree else str(HERE.parent))
    sys.path.insert(0, str(HERE))
    import store

    folder = store.make_corpus(store.Spec("ct", 300, 512, 512, 1, store.CT))
    files = sorted(folder.glob("*.dcm"))[:args.count]
    request, stream, pattern = build_stream(files, args.max_pdu)
    read = args.read or pattern
    modes = args.mode or ["ignore", "od"]
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
                    serve(request, stream, read, mode, str(out_dir))
                    profile.disable()
                    pstats.Stats(profile).sort_stats("tottime").print_stats(25)
                cpu, sent = serve(request, stream, read, mode, str(out_dir))
                if mode == "od" and len(list(out_dir.iterdir())) != args.count:
                    raise SystemExit(f"od: {len(list(out_dir.iterdir()))} files, not {args.count}")
                shutil.rmtree(out_dir)
                runs.append(cpu)
            print(f"{mode:7} {args.count} × CT, reads of {args.read or 'storescu pattern'}, PDUs of {args.max_pdu}: "
                  f"{min(runs) / args.count * 1e6:7.1f} µs CPU per object (min of {args.reps}; all: "
                  f"{', '.join(f'{r / args.count * 1e6:.0f}' for r in sorted(runs))})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
