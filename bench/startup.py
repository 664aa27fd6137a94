"""Whole-process start-up cost of the click-free fast path: ``dcmnet echo`` and a one-file ``dcmnet store``
against DCMTK's ``echoscu``/``storescu``, and against this dcmnet with the fast path switched off.

One ``storescp --ignore`` (TCP_NODELAY=1, a free port, stopped in a ``finally``) serves every run. The
commands run interleaved (A, B, C, A, B, C, ...) so a drifting machine load hits them alike; each run's CPU
time (user + system, ``os.wait4``) is reported next to its wall time: on a shared 2-core machine the CPU
medians are the steadier figures. Python children get a bytecode cache under bench/out/ (as an installed
wheel has), compiled before the first run. The "click path" runs the same package with
``fastpath.run_fast`` replaced by ``lambda argv: None`` (every command line through click).

    .venv/bin/python bench/startup.py              # 15 runs each
    .venv/bin/python bench/startup.py --runs 31
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
PY = str(ROOT / ".venv" / "bin" / "python")
DCMNET = str(ROOT / ".venv" / "bin" / "dcmnet")
HOST = "127.0.0.1"
sys.path.insert(0, str(HERE))
import echo  # noqa: E402  (bench/echo.py: the loopback shim and server helpers)
PY_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
PY_ENV["PYTHONPYCACHEPREFIX"] = str(OUT / "pycache")
PY_ENV["DCMNET_CONFIG"] = str(Path(tempfile.gettempdir()) / "dcmnet-bench-no-such-config.toml")
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
CLICK_PATH = ("import sys; from dcmnet_cli.cli import fastpath; fastpath.run_fast = lambda argv: None; "
              "from dcmnet_cli.cli.main import entry; sys.argv[0] = 'dcmnet'; entry()")


@contextmanager
def storescp() -> Iterator[int]:
    """storescp --ignore on 127.0.0.1 only (bench/echo.py's LD_PRELOAD shim; its address checked)."""
    port = echo.free_port()
    proc = subprocess.Popen(["storescp", "--ignore", str(port)], env={**DCMTK_ENV, "LD_PRELOAD": str(echo.build_shim())},
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        echo.wait_port(port, proc)
        echo.check_loopback_only(port)
        yield port
    finally:
        echo.stop(proc)


def one_file(folder: Path) -> str:
    """A small Secondary Capture object (a few hundred bytes), written with pydicom."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Bench^Start", "B1", "OT"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = folder / "one.dcm"
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def run(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall ms, CPU ms) of one run; a failed run is an error."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - t0) * 1000
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def commands(port: int, path: str) -> dict[str, tuple[list[str], dict]]:
    peer = [HOST, str(port)]
    return {
        "python -c pass": ([PY, "-c", "pass"], PY_ENV),
        "dcmnet echo": ([DCMNET, "echo", *peer], PY_ENV),
        "dcmnet echo (click path)": ([PY, "-c", CLICK_PATH, "echo", *peer], PY_ENV),
        "echoscu": (["echoscu", *peer], DCMTK_ENV),
        "dcmnet store 1 file": ([DCMNET, "store", "-q", *peer, path], PY_ENV),
        "dcmnet store 1 file (click path)": ([PY, "-c", CLICK_PATH, "store", "-q", *peer, path], PY_ENV),
        "storescu 1 file": (["storescu", *peer, path], DCMTK_ENV),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    for tool in ("storescp", "echoscu", "storescu"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found")
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "dcmnet_cli")], env=PY_ENV, check=True)
    with tempfile.TemporaryDirectory() as tmp, storescp() as port:
        cmds = commands(port, one_file(Path(tmp)))
        for cmd, env in cmds.values():  # warm caches
            run(cmd, env)
        wall: dict[str, list[float]] = {k: [] for k in cmds}
        cpu: dict[str, list[float]] = {k: [] for k in cmds}
        for _ in range(args.runs):
            for name, (cmd, env) in cmds.items():
                w, c = run(cmd, env)
                wall[name].append(w)
                cpu[name].append(c)
    med = statistics.median
    print(f"whole process, median of {args.runs} interleaved runs (ms)")
    print(f"    {'command':<34} {'wall':>8} {'wall min':>9} {'CPU':>8} {'CPU min':>8}")
    for name in cmds:
        print(f"    {name:<34} {med(wall[name]):8.1f} {min(wall[name]):9.1f} {med(cpu[name]):8.1f} {min(cpu[name]):8.1f}")
    print("ratios to DCMTK (wall median / CPU median / wall min):")
    for ours, theirs, goal in (("dcmnet echo", "echoscu", 2.0), ("dcmnet echo (click path)", "echoscu", 2.0),
                               ("dcmnet store 1 file", "storescu 1 file", 1.0),
                               ("dcmnet store 1 file (click path)", "storescu 1 file", 1.0)):
        print(f"    {ours:<34} / {theirs:<16} {med(wall[ours]) / med(wall[theirs]):5.2f} "
              f"{med(cpu[ours]) / med(cpu[theirs]):5.2f} {min(wall[ours]) / min(wall[theirs]):5.2f}   (goal <= {goal})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
