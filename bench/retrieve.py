"""C-GET and C-MOVE of one study: ``dcmnet listen`` vs DCMTK's dcmqrscp serving the same files, in one run.

The study (generated here with pydicom, deterministic, cached under bench/out/corpora/): ``--count``
instances (500) of ``--rows`` × ``--rows`` 16-bit CT (256: ~130 KB each), explicit VR little endian.
It is stored into both archives first (``dcmnet store``), then after one untimed round (imports, page
cache), ``--reps`` times each, interleaved, medians reported:

    getscu  -S  STUDY  → dcmnet listen -od           getscu  -S  STUDY  → dcmqrscp
    movescu -S  STUDY  → dcmnet listen → storescp    movescu -S  STUDY  → dcmqrscp → storescp

The requestor and the receiver are the same DCMTK programs for both archives (getscu writes into a fresh
folder per run; the C-MOVE receiver is one ``storescp -od`` writing into a fresh folder per run), with
``TCP_NODELAY=1`` and ``-pdu 131072`` everywhere (dcmqrscp's MaxPDUSize too), so the PDU sizes match.
files/s = instances / the requestor's wall time (process start to exit). dcmqrscp and storescp run under
``bind_loopback.c`` (LD_PRELOAD) so they bind 127.0.0.1 only; every server's address is checked first.

    .venv/bin/python bench/retrieve.py                 # 500 × 256×256
    .venv/bin/python bench/retrieve.py --count 100 --reps 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import echo  # noqa: E402  (servers, loopback checks, shim, environments)

OUT = HERE / "out"
HOST = "127.0.0.1"
PDU = "131072"
STUDY_UID = "1.2.826.0.1.3680043.8.498.777.1"


def make_study(count: int, rows: int) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    folder = OUT / "corpora" / f"retrieve-{count}x{rows}"
    if folder.exists() and len(list(folder.glob("*.dcm"))) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pixels = bytes((i * 7) & 0xFF for i in range(rows * rows * 2))
    for n in range(count):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = f"{STUDY_UID}.{n + 1}"
        ds.StudyInstanceUID = STUDY_UID
        ds.SeriesInstanceUID = f"{STUDY_UID}.0.{n // 100 + 1}"
        ds.PatientID, ds.PatientName = "BENCH", "Bench^Retrieve"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", "ACC1"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", n // 100 + 1, n + 1
        ds.Rows = ds.Columns = rows
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = pixels
        ds["PixelData"].VR = "OW"
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(folder / f"{n:04d}.dcm", enforce_file_format=True)
    return folder


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@contextmanager
def server(argv: list[str], port: int, env: dict, cwd: Path) -> Iterator[subprocess.Popen]:
    log = open(cwd / f"server-{port}.log", "wb")
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        echo.wait_port(port, proc)
        echo.check_loopback_only(port)
        yield proc
    finally:
        for child in children(proc.pid):  # dcmqrscp forks one per association: by PID, never by name
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass
        echo.stop(proc)
        log.close()


def dcmqrscp_config(root: Path, port: int, dest_port: int) -> Path:
    db = root / "db"
    db.mkdir(parents=True, exist_ok=True)
    text = "\n".join([
        f"NetworkTCPPort  = {port}", f"MaxPDUSize      = {PDU}", "MaxAssociations = 16", "",
        "HostTable BEGIN", f"dest_entry = (DEST, {HOST}, {dest_port})", "HostTable END", "",
        "VendorTable BEGIN", "VendorTable END", "",
        "AETable BEGIN", f"QRSCP {db} RW (10, 4096mb) ANY", "AETable END", "",
    ])
    path = root / "dcmqrscp.cfg"
    path.write_text(text)
    return path


def load(port: int, aet: str, folder: Path) -> None:
    done = subprocess.run([echo.PY, "-m", "dcmnet_cli", "-q", "store", f"{aet}@{HOST}:{port}", str(folder)],
                          capture_output=True, text=True, env=echo.PY_ENV)
    if done.returncode != 0:
        raise RuntimeError(f"loading {aet} failed: {done.stderr}")


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=echo.DCMTK_ENV, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return elapsed


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def run_get(port: int, aet: str, work: Path, count: int) -> float:
    out = Path(tempfile.mkdtemp(dir=work, prefix="get-"))
    seconds = timed(["getscu", "-S", "-aec", aet, "-pdu", PDU, "-od", str(out), "-k", "QueryRetrieveLevel=STUDY",
                     "-k", f"StudyInstanceUID={STUDY_UID}", HOST, str(port)])
    got = count_files(out)
    shutil.rmtree(out, ignore_errors=True)
    if got != count:
        raise RuntimeError(f"C-GET from {aet}: {got} files, expected {count}")
    return seconds


def run_move(port: int, aet: str, inbox: Path, count: int) -> float:
    for path in inbox.iterdir():
        path.unlink()
    seconds = timed(["movescu", "-S", "-aec", aet, "-aem", "DEST", "-pdu", PDU, "-k", "QueryRetrieveLevel=STUDY",
                     "-k", f"StudyInstanceUID={STUDY_UID}", HOST, str(port)])
    got = count_files(inbox)
    if got != count:
        raise RuntimeError(f"C-MOVE from {aet}: {got} files at the receiver, expected {count}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    for tool in ("getscu", "movescu", "storescp", "dcmqrscp"):
        if shutil.which(tool) is None:
            print(f"{tool} not found on PATH", file=sys.stderr)
            return 2
    study = make_study(args.count, args.rows)
    size = sum(p.stat().st_size for p in study.glob("*.dcm"))
    shim = echo.build_shim()
    shimmed = {**echo.DCMTK_ENV, "LD_PRELOAD": str(shim)}
    work = Path(tempfile.mkdtemp(prefix="dcmnet-retrieve-bench-"))
    ports = {name: echo.free_port() for name in ("listen", "dcmqrscp", "storescp")}
    results: dict[str, list[float]] = {"get listen": [], "get dcmqrscp": [], "move listen": [], "move dcmqrscp": []}
    try:
        inbox = work / "inbox"
        inbox.mkdir()
        qr_root = work / "qr"
        qr_root.mkdir()
        config = dcmqrscp_config(qr_root, ports["dcmqrscp"], ports["storescp"])
        listen_argv = [echo.PY, "-m", "dcmnet_cli", "-q", "listen", "--bind", HOST, "-aet", "ARCHIVE", "-od",
                       str(work / "archive"), "--no-progress", "--move-destination", f"DEST={HOST}:{ports['storescp']}",
                       str(ports["listen"])]
        with server(["storescp", "-pdu", PDU, "-od", str(inbox), str(ports["storescp"])], ports["storescp"], shimmed, work), \
                server(listen_argv, ports["listen"], echo.PY_ENV, work), \
                server(["dcmqrscp", "-c", str(config), str(ports["dcmqrscp"])], ports["dcmqrscp"], shimmed, qr_root):
            load(ports["listen"], "ARCHIVE", study)
            load(ports["dcmqrscp"], "QRSCP", study)
            # One untimed round first: listen imports pydicom and the retrieve code at its first C-GET/C-MOVE
            # (about 0.3 s, once per process), dcmqrscp forks per association; both page caches are warm after it.
            run_get(ports["listen"], "ARCHIVE", work, args.count)
            run_get(ports["dcmqrscp"], "QRSCP", work, args.count)
            run_move(ports["listen"], "ARCHIVE", inbox, args.count)
            run_move(ports["dcmqrscp"], "QRSCP", inbox, args.count)
            for _ in range(args.reps):  # interleaved, so drift (page cache, CPU) hits both alike
                results["get listen"].append(run_get(ports["listen"], "ARCHIVE", work, args.count))
                results["get dcmqrscp"].append(run_get(ports["dcmqrscp"], "QRSCP", work, args.count))
                results["move listen"].append(run_move(ports["listen"], "ARCHIVE", inbox, args.count))
                results["move dcmqrscp"].append(run_move(ports["dcmqrscp"], "QRSCP", inbox, args.count))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary: dict[str, object] = {"count": args.count, "bytes": size, "reps": args.reps}
    print(f"{args.count} instances, {size / 1e6:.1f} MB, {args.reps} runs each (median wall time of the requestor)")
    for name, runs in results.items():
        median = statistics.median(runs)
        summary[name] = {"seconds": round(median, 3), "files_per_s": round(args.count / median, 1),
                         "runs": [round(r, 3) for r in runs]}
        print(f"  {name:<14} {median:7.3f} s  {args.count / median:8.1f} files/s  {size / median / 1e6:7.1f} MB/s")
    for kind in ("get", "move"):
        ratio = statistics.median(results[f"{kind} dcmqrscp"]) / statistics.median(results[f"{kind} listen"])
        summary[f"{kind} ratio"] = round(ratio, 2)
        print(f"  C-{kind.upper()} listen / dcmqrscp files/s: {ratio:.2f}x (goal >= 1.0x)")
    OUT.mkdir(exist_ok=True)
    (OUT / "retrieve.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
