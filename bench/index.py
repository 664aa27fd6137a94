"""The index of ``dcmnet listen`` (issue 11): query times, store throughput with and without the index,
and how long a store waits on the index while C-FINDs run. Loopback only.

(a) ``query``: an index of 100 000 instances (1 000 studies x 2 series x 50 instances, 400 patients,
    study dates over 2020-2024) built through the Index API (the files are hard links of one small
    Part-10 file, so listen's start-up reconciliation finds every file with its recorded size and reads
    none); ``dcmnet listen -od`` serves it. On one association, median time from sending the C-FIND-RQ to
    receiving the final response, over ``--runs``:
      STUDY level, PatientName=``SMITH*``, StudyDate 20200101-20200630 (goal <= 50 ms);
      IMAGE level, one series (50 instances; goal <= 20 ms).
(b) ``store``: files/s of ``dcmnet store`` (one association) of ``--files`` small instances (64x64 16 bit,
    about 9 KiB) into ``listen -od`` with the index and with ``--no-index``, corpus and output on tmpfs,
    interleaved, median of ``--store-runs``, and listen's CPU (user+system) per object; ``--before REV``
    adds listen with the index's files (services/archive/, find_handler.py) as of REV, the rest as now.
    Goal: indexed >= 95 % of unindexed.
(c) ``blocking``: in one process, the longest and the 99th-percentile Index.add while 20 threads run
    STUDY-level searches back to back, against the same without searches.

    .venv/bin/python bench/index.py                  # everything
    .venv/bin/python bench/index.py query --runs 50
    .venv/bin/python bench/index.py store --before HEAD
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from itertools import islice
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
PY = str(ROOT / ".venv" / "bin" / "python")
HOST = "127.0.0.1"
AET = "BENCHIDX"
ENV = {**os.environ, "NO_COLOR": "1", "DCMNET_CONFIG": str(Path(tempfile.gettempdir()) / "dcmnet-bench-none.toml")}
SURNAMES = ["SMITH", "JONES", "MILLER", "DAVIS", "GARCIA", "WILSON", "MOORE", "TAYLOR", "BROWN", "CLARK"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_listening(proc: subprocess.Popen, port: int, seconds: float, what: str) -> None:
    """Until ``port`` accepts a connection; RuntimeError when ``proc`` exits or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection((HOST, port), 0.5).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.05)


@contextmanager
def listen(folder: Path, *flags: str, cwd: Path = ROOT):
    """``dcmnet listen -od folder`` (the package found in ``cwd``) on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "dcmnet_cli", "listen", "--bind", HOST, "-aet", AET, "-od", str(folder),
                             "--no-progress", "-q", *flags, str(port)], env=ENV, stdin=subprocess.DEVNULL, cwd=cwd)
    try:
        wait_listening(proc, port, 600, "listen")
        listen.pid = proc.pid  # type: ignore[attr-defined]
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


def attributes(study: int, series: int, instance: int) -> dict[str, str]:
    patient = study % 400
    month = 1 + study % 12
    return {
        "PatientID": f"PID{patient:05d}", "PatientName": f"{SURNAMES[patient % 10]}^P{patient}",
        "PatientBirthDate": "19700101", "PatientSex": "MF"[patient % 2],
        "StudyInstanceUID": f"1.2.826.0.1.3680043.8.498.9.{study}", "StudyDate": f"{2020 + study % 5}{month:02d}15",
        "StudyTime": "101500", "AccessionNumber": f"ACC{study:06d}", "StudyID": str(study),
        "StudyDescription": "CT CHEST", "SeriesInstanceUID": f"1.2.826.0.1.3680043.8.498.9.{study}.{series}",
        "Modality": "CT", "SeriesNumber": str(series), "SeriesDescription": f"series {series}",
        "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
        "SOPInstanceUID": f"1.2.826.0.1.3680043.8.498.9.{study}.{series}.{instance}", "InstanceNumber": str(instance),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc, Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_part10(path: Path, values: dict[str, str], pixels: int = 0) -> Path:
    """A small Part-10 file with these attributes (and a ``pixels`` x ``pixels`` 16-bit image)."""
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset

    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    if pixels:
        ds.Rows = ds.Columns = pixels
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 16, 12, 11, 0, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = os.urandom(2 * pixels * pixels)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


def build(folder: Path, studies: int = 1000, series: int = 2, per_series: int = 50) -> None:
    """The 100 000-instance index and its hard-linked files (kept between runs in bench/out/)."""
    from dcmnet_cli.services.archive.index import Index

    index_path = folder / ".dcmnet-index.sqlite"
    if index_path.exists():
        index = Index.open(str(index_path), str(folder))
        complete = index.counts()["IMAGE"] == studies * series * per_series
        index.close()
        if complete:
            return
        shutil.rmtree(folder)  # an interrupted build
    folder.mkdir(parents=True, exist_ok=True)
    template = write_part10(folder / "template.bin", attributes(0, 0, 0))
    size = template.stat().st_size  # hard links of it, a fresh copy every 10 000 (the file system's limit)
    index = Index.open(str(index_path), str(folder))
    started = time.perf_counter()
    count = 0
    for st in range(studies):
        if st % 100 == 0:
            shutil.copyfile(folder / "template.bin", folder / f"template-{st}.bin")
            template = folder / f"template-{st}.bin"
        sub = folder / f"{st:04d}"
        sub.mkdir(exist_ok=True)
        for se in range(series):
            for n in range(per_series):
                path = sub / f"{se}_{n}.dcm"
                os.link(template, path)
                index.add(str(path), attributes(st, se, n), "1.2.840.10008.1.2.1", size)
                count += 1
        if st % 100 == 99:
            print(f"  built {count} rows, {count / (time.perf_counter() - started):.0f} adds/s", flush=True)
    for leftover in folder.glob("template*.bin"):
        leftover.unlink()  # the hard links keep the data
    index.close()


def timed_queries(port: int, identifier, runs: int, model: str = "1.2.840.10008.5.1.4.1.2.2.1",
                  called: str = AET) -> tuple[list[float], int]:
    """ms from sending the C-FIND-RQ to the final response, per run, on one association; and the matches."""
    from dcmnet_cli.dimse.commandset import c_find_rq
    from dcmnet_cli.services.peer import Peer
    from dcmnet_cli.services.query import encode_identifier
    from dcmnet_cli.services.scu.association import associate, context_for
    from dcmnet_cli.services.session import DimseTimeout
    from dcmnet_cli.transport.client import Timeouts, release
    from dcmnet_cli.ul.negotiation import build_contexts

    session = associate(Peer(HOST, port, called), "BENCH", build_contexts([(model, ("1.2.840.10008.1.2.1",))]), Timeouts())
    context = context_for(session, model)
    data = encode_identifier(identifier, context.transfer_syntax)
    times, matches = [], 0
    try:
        for _ in range(runs):
            matches = 0
            started = time.perf_counter()
            message_id = session.request(context.context_id, lambda mid: c_find_rq(mid, model), data)
            for response in session.responses(message_id, DimseTimeout(60.0)):
                if response.message.status in (0xFF00, 0xFF01):
                    matches += 1
                    continue
                break
            times.append((time.perf_counter() - started) * 1000)
    finally:
        release(session.driver, 10)
    return times, matches


def query(args: argparse.Namespace) -> None:
    folder = HERE / "out" / "index-100k"
    print(f"(a) building / reusing the 100 000-instance index in {folder}", flush=True)
    build(folder)
    study, image = queries()
    image.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.9.417"
    image.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.9.417.1"
    started = time.perf_counter()
    with listen(folder) as port:
        print(f"  listen up (reconciled 100 000 files) in {time.perf_counter() - started:.1f} s")
        timed_queries(port, study, 3)  # warm-up: imports, caches
        for name, identifier, goal in (("STUDY  PatientName=SMITH* StudyDate 20200101-20200630", study, 50),
                                       ("IMAGE  one series", image, 20)):
            times, matches = timed_queries(port, identifier, args.runs)
            median = statistics.median(times)
            print(f"  {name}: {matches} matches, median {median:.1f} ms, p90 "
                  f"{statistics.quantiles(times, n=10)[-1]:.1f} ms (goal <= {goal} ms: {'ok' if median <= goal else 'MISSED'})")
    cpu_times(folder, (("STUDY", study), ("IMAGE", image)), args.runs)
    print("  dcmqrscp not compared at this size: loading 100 000 instances into it over storescu takes minutes.")


def cpu_times(folder: Path, queries, runs: int) -> None:
    """The same queries in this process, without the network: CPU time (process_time, immune to other
    processes' load on a shared machine) of search + answer encoding, as the C-FIND SCP does them."""
    from dcmnet_cli.services.archive.index import Index
    from dcmnet_cli.services.archive.matching import MatchOptions
    from dcmnet_cli.services.archive.search import search_attrs
    from dcmnet_cli.services.scp.find_encode import answer_bytes, plan

    index = Index.open(str(folder / ".dcmnet-index.sqlite"), str(folder))
    for name, identifier in queries:
        layout = plan(identifier, identifier.QueryRetrieveLevel, [], "1.2.840.10008.1.2.1")
        times = []
        for _ in range(runs + 2):
            started = time.process_time()
            for attrs in search_attrs(index, "study", identifier.QueryRetrieveLevel, identifier, MatchOptions()):
                answer_bytes(layout, attrs)
            times.append((time.process_time() - started) * 1000)
        print(f"  {name} in-process CPU time (search + encoding, no network): median {statistics.median(times[2:]):.1f} ms")
    index.close()


def queries():
    """The two bench queries: STUDY (wildcard name, date range, computed keys) and IMAGE (one series)."""
    from pydicom import Dataset

    study = Dataset()
    study.QueryRetrieveLevel = "STUDY"
    study.PatientName = "SMITH*"
    study.StudyDate = "20200101-20200630"
    study.StudyInstanceUID = study.PatientID = study.AccessionNumber = study.StudyDescription = ""
    study.NumberOfStudyRelatedInstances = study.ModalitiesInStudy = ""
    image = Dataset()
    image.QueryRetrieveLevel = "IMAGE"
    image.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.9.17"
    image.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.9.17.1"
    image.SOPInstanceUID = image.InstanceNumber = image.SOPClassUID = ""
    return study, image


@contextmanager
def dcmqrscp(files: list[Path], work: Path):
    """dcmqrscp bound to 127.0.0.1 only (bench/bind_loopback.c preloaded, checked) holding ``files``."""
    (work / "db").mkdir(parents=True)
    lib = HERE / "out" / "bind_loopback.so"
    if not lib.exists():
        lib.parent.mkdir(exist_ok=True)
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(HERE / "bind_loopback.c"), "-ldl"],
                       check=True)
    port = free_port()
    config = work / "dcmqrscp.cfg"
    config.write_text("\n".join([f"NetworkTCPPort  = {port}", "MaxPDUSize      = 16384", "MaxAssociations = 16",
                                 "HostTable BEGIN", "HostTable END", "VendorTable BEGIN", "VendorTable END",
                                 "AETable BEGIN", f"QRBENCH {work / 'db'} RW (200, 4096mb) ANY", "AETable END", ""]))
    env = {**ENV, "LD_PRELOAD": str(lib), "TCP_NODELAY": "1"}
    proc = subprocess.Popen(["dcmqrscp", "-c", str(config), str(port)], env=env, cwd=work, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(proc, port, 10, "dcmqrscp")
        subprocess.run(["storescu", "-aec", "QRBENCH", HOST, str(port), *map(str, files)], env=env, check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def compare(args: argparse.Namespace) -> None:
    """(d) The same two queries against listen and dcmqrscp holding the same 2 000 instances (20 studies)."""
    work = Path(tempfile.mkdtemp(prefix="dcmnet-bench-qr-"))
    try:
        inp = work / "in"
        inp.mkdir()
        files = [write_part10(inp / f"{st}_{se}_{n}.dcm", attributes(st, se, n))
                 for st in range(20) for se in range(2) for n in range(50)]
        study, image = queries()
        results = {}
        with listen(work / "in") as port:
            for name, identifier in (("STUDY", study), ("IMAGE", image)):
                timed_queries(port, identifier, 2)
                results[("listen", name)] = timed_queries(port, identifier, args.runs)
        with dcmqrscp(files, work / "qr") as port:
            for name, identifier in (("STUDY", study), ("IMAGE", image)):
                timed_queries(port, identifier, 2, called="QRBENCH")
                results[("dcmqrscp", name)] = timed_queries(port, identifier, args.runs, called="QRBENCH")
        for name in ("STUDY", "IMAGE"):
            ours, theirs = results[("listen", name)], results[("dcmqrscp", name)]
            mine, other = statistics.median(ours[0]), statistics.median(theirs[0])
            print(f"(d) 2 000 instances, {name}: listen {mine:.1f} ms ({ours[1]} matches), dcmqrscp {other:.1f} ms "
                  f"({theirs[1]} matches), dcmqrscp/listen {other / mine:.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


MINE = ("dcmnet_cli/services/archive", "dcmnet_cli/services/scp/find_handler.py", "dcmnet_cli/transport/batcher.py",
        "dcmnet_cli/services/scp/store_handler.py", "dcmnet_cli/services/scp/storage.py",
        "dcmnet_cli/cli/archive_options.py")
"""The files of the index's per-object cost: ``--before REV`` runs listen with these as of REV (git show)
and everything else as in the working tree (store_handler.py, storage.py and archive_options.py call the
index: they are taken as of REV too, so compare against a tree whose only change in them is the index's)."""


def before_tree(rev: str, work: Path) -> Path:
    """A copy of the working tree's package with :data:`MINE` as of ``rev`` (read-only git), or as in the
    folder ``rev`` (another checkout) when it is one."""
    tree = work / "before"
    shutil.copytree(ROOT / "dcmnet_cli", tree / "dcmnet_cli", ignore=shutil.ignore_patterns("__pycache__"))
    if os.path.isdir(rev):
        for name in MINE:
            source, target = Path(rev) / name, tree / name
            if not source.exists():
                if target.is_file():
                    target.unlink()
            elif source.is_dir():
                shutil.rmtree(target)
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copyfile(source, target)
        subprocess.run([PY, "-m", "compileall", "-q", str(tree / "dcmnet_cli")], check=True)
        return tree
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", rev, "--", *MINE],
                            check=True, capture_output=True, text=True).stdout.split()
    for name in listed:
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{name}"], check=True,
                              capture_output=True).stdout
        (tree / name).write_bytes(text)
    subprocess.run([PY, "-m", "compileall", "-q", str(tree / "dcmnet_cli")], check=True)
    return tree


def small_corpus(folder: Path, count: int, pixels: int) -> list[Path]:
    """``count`` instances of about 9 KiB (``pixels`` x ``pixels`` 16 bit) in 3 series of one study."""
    folder.mkdir(parents=True)
    paths = []
    for n in range(count):
        values = attributes(5000, n % 3, n)
        values.update(ImageType="ORIGINAL\\PRIMARY\\AXIAL", SliceThickness="1.0", KVP="120",
                      Manufacturer="BENCH", InstitutionName="BENCH HOSPITAL", BodyPartExamined="CHEST")
        paths.append(write_part10(folder / f"{n:05d}.dcm", values, pixels=pixels))
    return paths


def store_once(files: list[Path], out: Path, flags: tuple[str, ...], cwd: Path) -> tuple[float, float]:
    """One ``dcmnet store`` of ``files`` (one association) into a fresh listen: (files/s, listen CPU s)."""
    with listen(out, *flags, cwd=cwd) as port:
        before = cpu_seconds(listen.pid)  # type: ignore[attr-defined]
        started = time.perf_counter()
        done = subprocess.run([PY, "-m", "dcmnet_cli", "-q", "store", "-aec", AET, HOST, str(port),
                               *map(str, files)], env=ENV, stdin=subprocess.DEVNULL, cwd=ROOT)
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(listen.pid) - before  # type: ignore[attr-defined]
    if done.returncode != 0:
        raise RuntimeError(f"store failed ({done.returncode})")
    shutil.rmtree(out)
    return len(files) / elapsed, cpu


def store(args: argparse.Namespace) -> None:
    """(b) files/s and listen's CPU per object, indexed vs --no-index (and vs the index as of --before),
    corpus and output on tmpfs (/dev/shm) so disk write-back does not swamp the software's cost."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    work = Path(tempfile.mkdtemp(prefix="dcmnet-bench-index-", dir=base))
    try:
        files = small_corpus(work / "in", args.files, args.pixels)
        size = files[0].stat().st_size
        variants: list[tuple[str, tuple[str, ...], Path]] = [("indexed", (), ROOT), ("no index", ("--no-index",), ROOT)]
        for number, rev in enumerate(args.before or ()):
            variants.insert(number, (f"indexed @{os.path.basename(rev.rstrip('/')) or rev}", (),
                                     before_tree(rev, work / str(number))))
        rates: dict[str, list[float]] = {label: [] for label, _f, _c in variants}
        cpu: dict[str, list[float]] = {label: [] for label, _f, _c in variants}
        for run in range(args.store_runs):
            order = variants if run % 2 == 0 else variants[::-1]  # interleaved, alternating order
            for label, flags, cwd in order:
                rate, seconds = store_once(files, work / f"out-{run}-{len(rates[label])}", flags, cwd)
                rates[label].append(rate)
                cpu[label].append(seconds)
        print(f"(b) store {len(files)} files of {size / 1024:.1f} KiB, one association, output on "
              f"{base or 'disk'}, {args.store_runs} interleaved runs (listen CPU = user+system, /proc):")
        plain = statistics.median(rates["no index"])
        for label, _flags, _cwd in variants:
            per = [s / len(files) * 1e6 for s in cpu[label]]
            print(f"    {label:<22} {statistics.median(rates[label]):7.0f} files/s (median; "
                  f"{statistics.median(rates[label]) / plain:6.1%} of no index), listen CPU per object "
                  f"median {statistics.median(per):6.0f} us, min {min(per):6.0f} us")
        for label, _flags, _cwd in variants:
            if label != "no index":
                extra = statistics.median(cpu[label]) - statistics.median(cpu["no index"])
                print(f"    index cost, {label}: {extra / len(files) * 1e6:.0f} us CPU per object "
                      f"(median difference); throughput goal >= 95 %: "
                      f"{'met' if statistics.median(rates[label]) >= 0.95 * plain else 'MISSED'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def blocking(args: argparse.Namespace) -> None:
    from pydicom import Dataset

    from dcmnet_cli.services.archive.index import Index
    from dcmnet_cli.services.archive.matching import MatchOptions

    work = Path(tempfile.mkdtemp(prefix="dcmnet-bench-block-"))
    try:
        index = Index.open(str(work / "x.sqlite"), str(work))
        for st in range(200):
            for n in range(10):
                index.add(str(work / f"{st}_{n}.dcm"), attributes(st, 0, n), "", 1000)
        searches = [0]

        def searcher(stop: threading.Event, gated: bool) -> None:
            ds = Dataset()
            ds.QueryRetrieveLevel, ds.PatientName, ds.StudyInstanceUID = "STUDY", "S*", ""
            ds.NumberOfStudyRelatedInstances = ""
            while not stop.is_set():
                results = index.search("study", "STUDY", ds, MatchOptions())
                while True:  # as the C-FIND SCP does: batches of 32 computed with the gate held
                    if gated:
                        with index.gate:
                            batch = list(islice(results, 32))
                    else:
                        batch = list(islice(results, 32))
                    if not batch:
                        break
                searches[0] += 1

        def adds(base: int) -> list[float]:
            times = []
            for n in range(500):
                started = time.perf_counter()
                index.add(str(work / f"b{base}_{n}.dcm"), attributes(1000 + base, 0, n), "", 1000)
                times.append((time.perf_counter() - started) * 1000)
            return times

        def with_searchers(base: int, gated: bool) -> list[float]:
            stop = threading.Event()
            threads = [threading.Thread(target=searcher, args=(stop, gated)) for _ in range(20)]
            for thread in threads:
                thread.start()
            try:
                return adds(base)
            finally:
                stop.set()
                for thread in threads:
                    thread.join()

        runs = (("alone", adds(0)), ("with 20 searching threads, gated (as listen runs)", with_searchers(1, True)),
                ("with 20 searching threads, no gate", with_searchers(2, False)))
        for label, times in runs:
            print(f"(c) Index.add {label}: median {statistics.median(times):.2f} ms, p99 "
                  f"{statistics.quantiles(times, n=100)[-1]:.2f} ms, max {max(times):.2f} ms")
        print(f"    ({searches[0]} STUDY searches ran meanwhile; readers never wait for the writer: WAL)")
        index.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", choices=("query", "store", "blocking", "compare", "all"), default="all")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--pixels", type=int, default=64, help="(b) image side: 64 = objects of about 9 KiB")
    parser.add_argument("--store-runs", type=int, default=5)
    parser.add_argument("--before", metavar="REV", action="append", help="(b) also the index's files as of this git revision "
                                                        "(or as in this folder: another checkout); repeatable")
    args = parser.parse_args()
    for name, part in (("query", query), ("compare", compare), ("store", store), ("blocking", blocking)):
        if args.part in (name, "all"):
            part(args)


if __name__ == "__main__":
    main()
