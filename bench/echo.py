"""C-ECHO latency on loopback: dcmnet against DCMTK, side by side, in one run.

(a) whole process: ``dcmnet echo`` vs ``echoscu`` against the same DCMTK ``storescp`` (median of
    ``--runs``), with ``python -c pass`` as the floor; target dcmnet/echoscu <= 2.0 (issue 13). Also
    ``dcmnet echo`` with its click-free fast path switched off (the click path), and CPU times.
(b) in process: associate + one C-ECHO + release with ``dcmnet_cli.services.scu.echo.echo`` (imported once,
    looped) against ``storescp`` and against ``dcmnet listen``; target < 1 ms each.
(c) C-ECHO within one association (``echo(count=N)``, its rtt list) against both servers; target < 0.2 ms;
    DCMTK's figure is ``echoscu --repeat N`` minus ``echoscu --repeat 1``, divided by N-1.

Every server binds a free 127.0.0.1 port and is stopped in a ``finally``. DCMTK 3.6.7's storescp has no
bind-address option, so it runs under ``bind_loopback.c`` (LD_PRELOAD, rewrites a wildcard bind to
loopback), and its listening address is checked in /proc/net/tcp before any measurement. DCMTK
processes get ``TCP_NODELAY=1`` (DCMTK's best case).

    .venv/bin/python bench/echo.py                  # full run
    .venv/bin/python bench/echo.py --quick          # fewer repetitions
    .venv/bin/python bench/echo.py --profile        # also cProfile the in-process paths
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
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
DCMNET = str(VENV_BIN / "dcmnet")
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
PYCACHE = OUT / "pycache"
# An installed wheel has .pyc files; this environment sets PYTHONDONTWRITEBYTECODE, so every dcmnet start
# would recompile ~30 modules (+23 ms measured) whenever dcmnet_cli/ has no __pycache__. Python children
# get a bytecode cache under bench/out/ (never inside dcmnet_cli/), as an installed wheel would.
PY_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
PY_ENV["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
HOST = "127.0.0.1"


def use_tree(tree: str | None) -> None:
    """Measure the dcmnet_cli package of another checkout (e.g. ``git worktree add /tmp/before HEAD``)
    with this venv and these scripts: its folder goes first on the children's and our own sys.path."""
    if tree:
        root = str(Path(tree).resolve())
        if not (Path(root) / "dcmnet_cli").is_dir():
            raise SystemExit(f"{root}: no dcmnet_cli/ there")
        PY_ENV["PYTHONPATH"] = root
        sys.path.insert(0, root)


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def listening_addresses(port: int) -> list[str]:
    """Local addresses with a LISTEN socket on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for name, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, st = fields[1], fields[3]
            addr, hexport = local.split(":")
            if st == "0A" and int(hexport, 16) == port:
                found.append(addr)
    return found


def is_loopback_hex(addr: str) -> bool:
    return addr == "0100007F" or addr == "00000000000000000000000001000000"


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        if listening_addresses(port):
            return
        time.sleep(0.02)
    raise RuntimeError(f"server not listening on {port} after {timeout} s")


def check_loopback_only(port: int) -> None:
    addrs = listening_addresses(port)
    if not addrs or not all(is_loopback_hex(a) for a in addrs):
        raise RuntimeError(f"server on port {port} listens on {addrs}, not only 127.0.0.1: refusing to benchmark")


def build_shim() -> Path:
    OUT.mkdir(exist_ok=True)
    src, lib = HERE / "bind_loopback.c", OUT / "bind_loopback.so"
    if not lib.exists() or lib.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(src), "-ldl"], check=True)
    return lib


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def storescp():
    shim = build_shim()
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="bench-storescp-")
    env = {**DCMTK_ENV, "LD_PRELOAD": str(shim)}
    proc = subprocess.Popen(["storescp", "-od", tmp, str(port)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        check_loopback_only(port)
        yield port
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def dcmnet_listen():
    port = free_port()
    # --json: per-association events go to a file (cheap, and nothing can fill a pipe and block it).
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([DCMNET, "listen", "--bind", HOST, "--json", str(port)], env=PY_ENV,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        check_loopback_only(port)
        yield port
    finally:
        stop(proc)
        log.close()


# --------------------------------------------------------------------------- measurements


CPU_MS: dict[str, list[float]] = {}
"""CPU time (user+sys, from os.wait4) of each whole-process run, by command name: less noisy than wall time
on a shared 2-core machine."""


def time_cmd(cmd: list[str], env: dict | None = None, name: str | None = None) -> float:
    """Wall milliseconds of one run of ``cmd``; its CPU milliseconds go to ``CPU_MS[name]``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    if name is not None:
        CPU_MS.setdefault(name, []).append((usage.ru_utime + usage.ru_stime) * 1000)
    return elapsed * 1000


CLICK_PATH = ("import sys; from dcmnet_cli.cli import fastpath; fastpath.run_fast = lambda argv: None; "
              "from dcmnet_cli.cli.main import entry; sys.argv[0] = 'dcmnet'; entry()")
"""``dcmnet`` with the click-free fast path switched off (every command line goes through click)."""


def whole_process(port: int, runs: int) -> dict[str, list[float]]:
    cmds = {
        "python -c pass": ([PY, "-c", "pass"], PY_ENV),
        "dcmnet --version": ([DCMNET, "--version"], PY_ENV),
        "dcmnet echo": ([DCMNET, "echo", HOST, str(port)], PY_ENV),
        "dcmnet echo (click path)": ([PY, "-c", CLICK_PATH, "echo", HOST, str(port)], PY_ENV),
        "echoscu": (["echoscu", HOST, str(port)], DCMTK_ENV),
    }
    for cmd, env in cmds.values():  # warm the page cache
        time_cmd(cmd, env)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(runs):  # interleaved so drifting machine load hits every command alike
        for name, (cmd, env) in cmds.items():
            times[name].append(time_cmd(cmd, env, name))
    return times


def inprocess_assocs(port: int, n: int) -> list[float]:
    from dcmnet_cli.services.scu.echo import echo
    from dcmnet_cli.services.peer import Peer

    peer = Peer(HOST, port)
    for _ in range(min(20, n)):
        echo(peer)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = echo(peer)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.statuses == [0], r.statuses
    return out


def inprocess_echoes(port: int, count: int, repeat: int) -> dict:
    from dcmnet_cli.services.scu.echo import echo
    from dcmnet_cli.services.peer import Peer

    peer = Peer(HOST, port)
    echo(peer, count=min(100, count))
    medians, means = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = echo(peer, count=count)
        total = (time.perf_counter() - t0) * 1000
        assert all(s == 0 for s in r.statuses)
        medians.append(statistics.median(r.rtt_ms))
        means.append((total - r.setup_ms - r.release_ms) / count)
    return {"median_rtt_ms": statistics.median(medians), "mean_per_echo_ms": statistics.median(means),
            "runs_median_rtt_ms": medians}


def echoscu_repeat(port: int, count: int, repeat: int) -> dict:
    """Per-echo time of echoscu within one association: (T(--repeat N) - T(--repeat 1)) / (N-1)."""
    one, many = [], []
    base = ["echoscu", HOST, str(port)]
    time_cmd(base + ["--repeat", "1"], DCMTK_ENV)
    for _ in range(repeat):
        one.append(time_cmd(base + ["--repeat", "1"], DCMTK_ENV))
        many.append(time_cmd(base + ["--repeat", str(count)], DCMTK_ENV))
    per = (statistics.median(many) - statistics.median(one)) / (count - 1)
    return {"per_echo_ms": per, "repeat1_ms": one, f"repeat{count}_ms": many}


def profile(port: int, label: str, n_assoc: int, count: int) -> str:
    from dcmnet_cli.services.scu.echo import echo
    from dcmnet_cli.services.peer import Peer

    peer = Peer(HOST, port)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n_assoc):
        echo(peer)
    echo(peer, count=count)
    prof.disable()
    OUT.mkdir(exist_ok=True)
    path = OUT / f"echo-profile-{label}.pstats"
    prof.dump_stats(str(path))
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(22)
    return f"--- cProfile, {n_assoc} associations + {count} echoes vs {label} (tottime; saved {path})\n" + buf.getvalue()


# --------------------------------------------------------------------------- report


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20, help="whole-process runs per command")
    ap.add_argument("--assocs", type=int, default=500, help="in-process associations per server")
    ap.add_argument("--count", type=int, default=2000, help="echoes per association for (c)")
    ap.add_argument("--repeat", type=int, default=5, help="repetitions of (c)")
    ap.add_argument("--quick", action="store_true", help="runs=8, assocs=150, count=500, repeat=3")
    ap.add_argument("--profile", action="store_true", help="cProfile the in-process paths too")
    ap.add_argument("--tree", help="measure the dcmnet_cli of this checkout instead (a before/after worktree)")
    args = ap.parse_args()
    use_tree(args.tree)
    if args.quick:
        args.runs, args.assocs, args.count, args.repeat = 8, 150, 500, 3
    for tool in ("storescp", "echoscu", "gcc"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found")

    res: dict = {"benchmark": "echo", "runs": args.runs, "assocs": args.assocs, "count": args.count,
                 "repeat": args.repeat, "cpus": os.cpu_count()}
    profiles = []
    for name, server, label in (("storescp", storescp, "storescp (TCP_NODELAY=1)"),
                                ("listen", dcmnet_listen, "dcmnet listen")):
        with server() as port:
            print(f"{label} on 127.0.0.1:{port}", flush=True)
            if name == "storescp":  # whole processes are compared against DCMTK's server only
                res["whole_process_ms"] = whole_process(port, args.runs)
                print("  (a) done", flush=True)
            res[f"assoc_{name}_ms"] = inprocess_assocs(port, args.assocs)
            print("  (b) done", flush=True)
            res[f"echo_dcmnet_vs_{name}"] = inprocess_echoes(port, args.count, args.repeat)
            res[f"echo_echoscu_vs_{name}"] = echoscu_repeat(port, args.count, args.repeat)
            print("  (c) done", flush=True)
            if args.profile:
                profiles.append(profile(port, name, args.assocs, args.count))

    wp = {k: med(v) for k, v in res["whole_process_ms"].items()}
    floor = wp["python -c pass"]
    print()
    print(f"(a) whole process, C-ECHO vs storescp, median of {args.runs} runs (ms)")
    print(f"    {'command':<28} {'median':>8} {'min':>8} {'max':>8} {'over floor':>11}")
    for name, xs in res["whole_process_ms"].items():
        print(f"    {name:<28} {med(xs):8.1f} {min(xs):8.1f} {max(xs):8.1f} {med(xs) - floor:11.1f}")
    ratio_a = wp["dcmnet echo"] / wp["echoscu"]
    print(f"    ratio dcmnet echo / echoscu = {ratio_a:.2f}  (target <= 2.0: {'PASS' if ratio_a <= 2.0 else 'FAIL'})")
    print(f"    ratio without the fast path (click) / echoscu = {wp['dcmnet echo (click path)'] / wp['echoscu']:.2f}")
    cpu = {k: med(v) for k, v in CPU_MS.items()}
    res["whole_process_cpu_ms"] = CPU_MS
    print("    CPU time (user+sys), median: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()))
    print(f"    CPU ratio dcmnet echo / echoscu = {cpu['dcmnet echo'] / cpu['echoscu']:.2f}, "
          f"click path / echoscu = {cpu['dcmnet echo (click path)'] / cpu['echoscu']:.2f}")

    print()
    print(f"(b) in process: associate + C-ECHO + release, {args.assocs} times (ms per association)")
    print(f"    {'server':<16} {'median':>8} {'p10':>8} {'p90':>8} {'assoc/s':>9}  target < 1 ms")
    b = {}
    for label, key in (("storescp", "assoc_storescp_ms"), ("dcmnet listen", "assoc_listen_ms")):
        xs = sorted(res[key])
        m = med(xs)
        b[label] = m
        print(f"    {label:<16} {m:8.3f} {xs[len(xs) // 10]:8.3f} {xs[9 * len(xs) // 10]:8.3f} {1000 / m:9.0f}  "
              f"{'PASS' if m < 1 else 'FAIL'}")

    print()
    print(f"(c) C-ECHO within one association: {args.count} echoes, median of {args.repeat} (ms per echo)")
    print(f"    {'client':<28} {'vs storescp':>12} {'vs listen':>10}   target < 0.2 ms")
    c = {
        "dcmnet (median rtt)": (res["echo_dcmnet_vs_storescp"]["median_rtt_ms"], res["echo_dcmnet_vs_listen"]["median_rtt_ms"]),
        "dcmnet (total/N)": (res["echo_dcmnet_vs_storescp"]["mean_per_echo_ms"], res["echo_dcmnet_vs_listen"]["mean_per_echo_ms"]),
        "echoscu --repeat": (res["echo_echoscu_vs_storescp"]["per_echo_ms"], res["echo_echoscu_vs_listen"]["per_echo_ms"]),
    }
    for name, (s, l) in c.items():
        print(f"    {name:<28} {s:12.4f} {l:10.4f}   {'PASS' if max(s, l) < 0.2 else 'FAIL'}")
    rs = c["dcmnet (total/N)"][0] / c["echoscu --repeat"][0]
    rl = c["dcmnet (total/N)"][1] / c["echoscu --repeat"][1]
    print(f"    ratio dcmnet/echoscu per echo: vs storescp {rs:.2f}, vs listen {rl:.2f}")
    srv = c["echoscu --repeat"][1] / c["echoscu --repeat"][0]
    print(f"    server cost (echoscu client): listen/storescp = {srv:.2f}")

    res["summary"] = {
        "whole_process_median_ms": wp, "ratio_dcmnet_echoscu": ratio_a,
        "assoc_median_ms": b, "per_echo_ms": {k: {"storescp": v[0], "listen": v[1]} for k, v in c.items()},
        "ratio_per_echo_vs_storescp": rs, "ratio_per_echo_vs_listen": rl,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "echo.json").write_text(json.dumps(res, indent=2))
    print(f"\nwrote {OUT / 'echo.json'}")
    for p in profiles:
        print()
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
