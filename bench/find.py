"""C-FIND on loopback: ``dcmnet find`` against DCMTK's ``findscu``, side by side, in one run.

A DCMTK ``dcmqrscp`` (bound to 127.0.0.1 by ``bind_loopback.c``, checked in /proc/net/tcp) holds one
patient, one study, one series of ``--instances`` (2 000) small CT instances generated with pydicom
into a temporary folder and sent with storescu. Then, whole process, median of ``--runs``, interleaved:

(a) 2 000 IMAGE-level matches: ``dcmnet find --format table`` (COLUMNS=160) and ``dcmnet find --json``
    vs ``findscu`` with the same keys; goal dcmnet/findscu <= 1.0;
(b) one STUDY-level match: ``dcmnet find`` (TSV) vs ``findscu``; goal <= 2.0.

DCMTK processes get ``TCP_NODELAY=1`` (their best case). Python children get a bytecode cache under
bench/out/ (as an installed wheel has). ``--tree DIR`` measures the dcmnet_cli package of another
checkout (e.g. ``git worktree add /tmp/before HEAD``) with this venv, ``--compare DIR`` measures it as
"before" interleaved with this checkout (the fair comparison on a loaded machine); ``--profile`` also
runs one 2 000-match query in this process (median of 5, then once under cProfile) and prints the
per-match cost (``--profile json``: of ``--json``, written to a file in /dev/shm when there is one). Wall and CPU (user + system of the child) times are both reported: on a shared,
loaded machine the CPU ratios are the steadier ones.

    .venv/bin/python bench/find.py                 # full run
    .venv/bin/python bench/find.py --runs 5        # quicker
    .venv/bin/python bench/find.py --tree /tmp/before
    .venv/bin/python bench/find.py --compare /tmp/before
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
VENV_BIN = ROOT / ".venv" / "bin"
PY = str(VENV_BIN / "python")
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
PY_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
PY_ENV["PYTHONPYCACHEPREFIX"] = str(OUT / "pycache")
PY_ENV["NO_COLOR"] = "1"
PY_ENV["DCMNET_CONFIG"] = str(Path(tempfile.gettempdir()) / "dcmnet-bench-no-such-config.toml")
HOST = "127.0.0.1"
AET = "BENCHQR"
UID_ROOT = "1.2.826.0.1.3680043.8.498.7"
STUDY_UID = f"{UID_ROOT}.1"
SERIES_UID = f"{UID_ROOT}.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def dcmnet_cmd() -> list[str]:
    return [PY, "-m", "dcmnet_cli"]


def use_tree(tree: str | None) -> None:
    if tree:
        root = str(Path(tree).resolve())
        if not (Path(root) / "dcmnet_cli").is_dir():
            raise SystemExit(f"{root}: no dcmnet_cli/ there")
        PY_ENV["PYTHONPATH"] = root
        sys.path.insert(0, root)


# --------------------------------------------------------------------------- the archive


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def listening(port: int) -> list[str]:
    found = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, hexport = fields[1].split(":")
            if fields[3] == "0A" and int(hexport, 16) == port:
                found.append(addr)
    return found


def build_shim() -> Path:
    OUT.mkdir(exist_ok=True)
    src, lib = HERE / "bind_loopback.c", OUT / "bind_loopback.so"
    if not lib.exists() or lib.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(src), "-ldl"], check=True)
    return lib


def make_files(folder: Path, count: int) -> list[Path]:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    files = []
    for number in range(1, count + 1):
        ds = Dataset()
        ds.SOPClassUID = CT_IMAGE
        ds.SOPInstanceUID = f"{SERIES_UID}.{number}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY_UID, SERIES_UID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Bench^Find", "BENCH1", "19700101", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240102", "101500", "1", "ACC1"
        ds.StudyDescription, ds.Modality, ds.SeriesNumber = "Find benchmark", "CT", 1
        ds.InstanceNumber = number
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{number:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


@contextmanager
def dcmqrscp(count: int):
    """dcmqrscp on a free loopback port holding ``count`` instances of one series; always stopped."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-find-"))
    proc = None
    try:
        db, inp = tmp / "db", tmp / "in"
        db.mkdir()
        inp.mkdir()
        files = make_files(inp, count)
        port = free_port()
        config = tmp / "dcmqrscp.cfg"
        config.write_text("\n".join([
            f"NetworkTCPPort  = {port}", "MaxPDUSize      = 16384", "MaxAssociations = 16", "",
            "HostTable BEGIN", "HostTable END", "", "VendorTable BEGIN", "VendorTable END", "",
            "AETable BEGIN", f"{AET} {db} RW (200, 1024mb) ANY", "AETable END", ""]))
        env = {**DCMTK_ENV, "LD_PRELOAD": str(build_shim())}
        proc = subprocess.Popen(["dcmqrscp", "-c", str(config), str(port)], env=env, cwd=tmp,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dcmqrscp did not start")
            time.sleep(0.02)
        if not all(a in ("0100007F", "00000000000000000000000001000000") for a in listening(port)):
            raise RuntimeError(f"dcmqrscp listens on {listening(port)}, not only 127.0.0.1: refusing to benchmark")
        subprocess.run(["storescu", "-aec", AET, HOST, str(port), *map(str, files)], env=DCMTK_ENV, check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        yield port
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- commands


IMAGE_KEYS = [f"StudyInstanceUID={STUDY_UID}", f"SeriesInstanceUID={SERIES_UID}"]
IMAGE_RETURN = ["InstanceNumber", "SOPClassUID", "SOPInstanceUID"]
STUDY_KEYS = ["PatientID=BENCH1"]
STUDY_RETURN = ["PatientName", "StudyDate", "StudyDescription", "ModalitiesInStudy", "AccessionNumber",
                "StudyInstanceUID", "NumberOfStudyRelatedInstances", "StudyTime", "StudyID"]


def commands(port: int) -> dict[str, tuple[list[str], dict]]:
    peer = ["-aec", AET, HOST, str(port)]
    ks = lambda keys: [arg for key in keys for arg in ("-k", key)]  # noqa: E731
    table_env = {**PY_ENV, "COLUMNS": "160"}
    return {
        "2000: dcmnet find (table)": ([*dcmnet_cmd(), "find", *peer, "-L", "IMAGE", *ks(IMAGE_KEYS), "--format", "table"],
                                      table_env),
        "2000: dcmnet find --json": ([*dcmnet_cmd(), "find", *peer, "-L", "IMAGE", *ks(IMAGE_KEYS), "--json"], PY_ENV),
        "2000: findscu": (["findscu", "-S", *peer, "-k", "QueryRetrieveLevel=IMAGE",
                           *ks(IMAGE_KEYS), *ks(IMAGE_RETURN)], DCMTK_ENV),
        "1: dcmnet find": ([*dcmnet_cmd(), "find", *peer, *ks(STUDY_KEYS)], PY_ENV),
        "1: findscu": (["findscu", "-S", *peer, "-k", "QueryRetrieveLevel=STUDY", *ks(STUDY_KEYS), *ks(STUDY_RETURN)],
                       DCMTK_ENV),
    }


def time_cmd(cmd: list[str], env: dict) -> tuple[float, float, int]:
    """Wall milliseconds, CPU milliseconds (user + system of the child) and the number of output lines
    (checked: every command must find its matches)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()  # cwd: not this checkout, or `python -m` would import its dcmnet_cli despite --tree
    done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          cwd=tempfile.gettempdir())
    elapsed = (time.perf_counter() - t0) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.decode(errors='replace')[-500:]}")
    return elapsed, cpu, done.stdout.count(b"\n") + done.stderr.count(b"Find Response")


def measure(port: int, runs: int, compare: str | None = None) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU times per command, runs interleaved so drifting machine load hits each alike;
    ``compare``: also the dcmnet commands with the dcmnet_cli of that checkout (named "before: ...")."""
    cmds = commands(port)
    if compare:
        root = str(Path(compare).resolve())
        cmds.update({f"before: {name}": (cmd, {**env, "PYTHONPATH": root})
                     for name, (cmd, env) in commands(port).items() if "dcmnet" in name})
    for name, (cmd, env) in cmds.items():  # warm-up, and a sanity check of the match counts
        lines = time_cmd(cmd, env)[2]
        print(f"  warm-up {name}: {lines} output lines", file=sys.stderr)
    times: dict[str, list[float]] = {name: [] for name in cmds}
    cpu: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, (cmd, env) in cmds.items():
            wall, used, _lines = time_cmd(cmd, env)
            times[name].append(wall)
            cpu[name].append(used)
    return times, cpu


def profile(port: int, count: int, fmt: str = "tsv") -> str:
    """One 2 000-match query in this process (the CLI's on_match included) under cProfile."""
    from dcmnet_cli.cli.main import main

    argv = ["find", "-aec", AET, HOST, str(port), "-L", "IMAGE", *[a for k in IMAGE_KEYS for a in ("-k", k)],
            "--format", fmt]
    shm = Path("/dev/shm")
    sink = open(shm / f"bench-find-{os.getpid()}.out", "w") if shm.is_dir() else io.StringIO()  # noqa: SIM115

    def once() -> float:
        real = sys.stdout
        sys.stdout = sink
        t0 = time.perf_counter()
        try:
            main(argv)
        except SystemExit:
            pass
        finally:
            sys.stdout = real
        return time.perf_counter() - t0

    once()  # imports and first association out of the way
    plain = statistics.median(once() for _ in range(5))
    prof = cProfile.Profile()
    prof.enable()
    once()
    prof.disable()
    OUT.mkdir(exist_ok=True)
    prof.dump_stats(str(OUT / "find-profile.pstats"))
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumtime").print_stats(25)
    sink.close()
    name = getattr(sink, "name", None)
    if isinstance(name, str):
        os.unlink(name)
    return (f"in process, whole query ({count} matches, {fmt}): {plain * 1000:.1f} ms, "
            f"{plain * 1e6 / count:.1f} us per match\n" + buf.getvalue())


def report(times: dict[str, list[float]], what: str) -> list[tuple[str, float, float]]:
    """Print the medians and the ratios to findscu of one measure (wall or CPU); return the ratio rows."""
    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"{what} time, ms:")
    for name, value in med.items():
        print(f"  {name:40s} {value:8.1f}   (min {min(times[name]):.1f}, max {max(times[name]):.1f})")
    rows = []
    for prefix in ("", "before: "):
        if f"{prefix}1: dcmnet find" not in med:
            continue
        rows += [(f"{what}: {prefix}2 000 matches, table", med[f"{prefix}2000: dcmnet find (table)"] / med["2000: findscu"], 1.0),
                 (f"{what}: {prefix}2 000 matches, --json", med[f"{prefix}2000: dcmnet find --json"] / med["2000: findscu"], 1.0),
                 (f"{what}: {prefix}one match", med[f"{prefix}1: dcmnet find"] / med["1: findscu"], 2.0)]
    print(f"ratios dcmnet / findscu, {what} (goal):")
    for label, ratio, goal in rows:
        print(f"  {label.split(': ', 1)[1]:32s} {ratio:5.2f}x   (goal <= {goal:.1f}x: {'met' if ratio <= goal else 'NOT met'})")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--tree", default=None, help="measure the dcmnet_cli of another checkout")
    parser.add_argument("--compare", default=None, metavar="DIR",
                        help="also measure the dcmnet_cli of DIR (e.g. a worktree of HEAD), interleaved, as 'before'")
    parser.add_argument("--profile", nargs="?", const="tsv", choices=("tsv", "json"),
                        help="also profile one query in this process (TSV, or --json)")
    args = parser.parse_args()
    use_tree(args.tree)
    for tool in ("dcmqrscp", "findscu", "storescu", "gcc"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found on PATH")
    with dcmqrscp(args.instances) as port:
        times, cpu = measure(port, args.runs, args.compare)
        profiled = profile(port, args.instances, args.profile) if args.profile else ""
    print(f"dcmnet find vs findscu, dcmqrscp on loopback, median of {args.runs} whole-process runs"
          + (f" (dcmnet_cli from {args.tree})" if args.tree else "") + f"; load average {os.getloadavg()[0]:.1f}")
    rows = report(times, "wall") + report(cpu, "CPU (user+system)")
    if profiled:
        print(profiled)
    OUT.mkdir(exist_ok=True)
    (OUT / "find.json").write_text(json.dumps({"tree": args.tree, "runs": args.runs, "times_ms": times, "cpu_ms": cpu,
                                               "ratios": {label: ratio for label, ratio, _goal in rows}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
