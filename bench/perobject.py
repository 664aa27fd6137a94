"""Per-object cost of ``dcmnet store`` and ``dcmnet listen``: CPU µs per object on each side, with the
other side DCMTK (so only ours is measured), from N objects minus one (start-up and association
cancel out); optionally cProfile of each side.

    .venv/bin/python bench/perobject.py                       # 10 000 × 64×64 MR (generated once)
    .venv/bin/python bench/perobject.py --corpus ct --dcmtk   # 300 × 512×512 CT (~0.5 MB, bench/store.py's CT spec)
    .venv/bin/python bench/perobject.py --tree /tmp/before    # another checkout's dcmnet_cli
    .venv/bin/python bench/perobject.py --profile             # also cProfile both sides, every thread (bench/out/perobject-*)
    .venv/bin/python bench/perobject.py --compare /tmp/before # that checkout and this one, interleaved rep by rep
    .venv/bin/python bench/perobject.py --compare /tmp/before --tree /tmp/after   # two other checkouts

store side: ``dcmnet store`` → ``storescp --ignore``: the client's user+sys CPU (wait4).
listen side: ``storescu`` → ``dcmnet listen --ignore`` (and ``-od --no-fsync``): the server's CPU (/proc).
``-od`` writes under tmpfs (/dev/shm) by default, as bench/store.py does (``--out-dir disk`` for bench/out):
the software's cost, without the disk's write-back noise.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import echo  # noqa: E402
import store  # noqa: E402

COUNT = 10_000
CORPORA = {"small": (10_000, 64, "~9 KB"), "ct": (300, 512, "~0.5 MB")}  # default count, rows = cols, size
CORPUS = ["small"]


def _folder_of(one_from: Path, name: str) -> Path:
    folder = store.CORPORA / name
    if not folder.exists():
        folder.mkdir(parents=True)
        shutil.copy(next(iter(sorted(one_from.iterdir()))), folder / "one.dcm")
    return folder


def store_side(folder: Path, one: Path, shim: Path, reps: int, window: int) -> dict[str, float]:
    cpu, wall = {}, {}
    for name, f in (("one", one), ("many", folder)):
        runs = []
        for _ in range(reps):
            server = store.Server("storescp", "ignore", shim)
            try:
                argv, env = store.client_argv("dcmnet", server.port, f, window=window)
                res = store.run_client(argv, env)
            finally:
                server.stop()
            if res["rc"] != 0:
                raise SystemExit(f"store failed: {res['stderr']}")
            runs.append(res)
        cpu[name] = min(r["cpu"] for r in runs)
        wall[name] = min(r["wall"] for r in runs)
    return {"cpu_us": (cpu["many"] - cpu["one"]) / (COUNT - 1) * 1e6,
            "wall_us": (wall["many"] - wall["one"]) / (COUNT - 1) * 1e6}


def listen_side(folder: Path, one: Path, shim: Path, reps: int, mode: str, extra: tuple[str, ...] = ()) -> dict[str, float]:
    cpu, wall = {}, {}
    for name, f in (("one", one), ("many", folder)):
        runs = []
        for _ in range(reps):
            store.LISTEN_EXTRA.extend(extra)
            try:
                res = store.run_case(store.Case("storescu", "dcmnet", mode), f, 1 if name == "one" else COUNT, shim)
            finally:
                del store.LISTEN_EXTRA[len(store.LISTEN_EXTRA) - len(extra):]
            if not res["ok"]:
                raise SystemExit(f"listen failed: {res.get('problem')}")
            runs.append(res)
        cpu[name] = min(r["server_cpu"] for r in runs)
        wall[name] = min(r["wall"] for r in runs)
    return {"cpu_us": (cpu["many"] - cpu["one"]) / (COUNT - 1) * 1e6,
            "wall_us": (wall["many"] - wall["one"]) / (COUNT - 1) * 1e6}


def async_side(folder: Path, one: Path, shim: Path, reps: int) -> dict[str, float]:
    """``store --async 8`` → ``listen --ignore``: both sides ours; the client's CPU per object."""
    cpu, wall = {}, {}
    for name, f in (("one", one), ("many", folder)):
        runs = [store.run_case(store.Case("dcmnet", "dcmnet", "ignore", window=8), f, -1, shim) for _ in range(reps)]
        cpu[name] = min(r["cpu"] for r in runs)
        wall[name] = min(r["wall"] for r in runs)
    return {"cpu_us": (cpu["many"] - cpu["one"]) / (COUNT - 1) * 1e6,
            "wall_us": (wall["many"] - wall["one"]) / (COUNT - 1) * 1e6}


def dcmtk_side(folder: Path, one: Path, shim: Path, reps: int, mode: str = "ignore") -> dict[str, float]:
    """The same for storescu → storescp --ignore (or -od): storescu's CPU and storescp's, per object."""
    out = {}
    for name, f in (("one", one), ("many", folder)):
        count = -1 if mode == "ignore" else (1 if name == "one" else COUNT)
        runs = [store.run_case(store.Case("storescu", "storescp", mode), f, count, shim) for _ in range(reps)]
        out[name] = (min(r["cpu"] for r in runs), min(r["server_cpu"] for r in runs))
    return {"storescu_cpu_us": (out["many"][0] - out["one"][0]) / (COUNT - 1) * 1e6,
            "storescp_cpu_us": (out["many"][1] - out["one"][1]) / (COUNT - 1) * 1e6}


_PROFILED = """
import cProfile, pstats, sys, threading
profiles = []
lock = threading.Lock()
run = threading.Thread.run


def profiled(self):  # every thread (listen's associations run in worker threads) under its own profiler
    profile = cProfile.Profile()
    with lock:
        profiles.append(profile)
    profile.enable()
    try:
        run(self)
    finally:
        profile.disable()


threading.Thread.run = profiled
from dcmnet_cli.cli.main import cli
main = cProfile.Profile()
main.enable()
try:
    cli.main(args=sys.argv[2:], standalone_mode=False)
finally:
    main.disable()
    stats = pstats.Stats(main)
    with lock:
        for profile in profiles:
            profile.create_stats()
            if profile.stats:
                stats.add(profile)
    stats.dump_stats(sys.argv[1])
"""
"""The command in process under cProfile, its threads included (``dcmnet``'s entry point ends with os._exit:
no profile written; cProfile alone sees only the main thread, where listen only accepts)."""


def profile(folder: Path, shim: Path) -> None:
    prefix = store.OUT / ("perobject" if CORPUS[0] == "small" else f"perobject-{CORPUS[0]}")
    if CORPUS[0] == "small":
        server = store.Server("storescp", "ignore", shim)
        try:
            argv, env = store.client_argv("dcmnet", server.port, folder)
            subprocess.run([echo.PY, "-c", _PROFILED, f"{prefix}-store.pstats", *argv[1:]],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        finally:
            server.stop()
        print(store.top_frames(f"{prefix}-store.pstats", 30))
    for name, flags in (("ignore", ["--ignore"]), ("od", ["-od", "", "--no-fsync", *store.LISTEN_EXTRA])):
        port = echo.free_port()
        outdir = tempfile.mkdtemp(prefix="recv-prof-", dir=store.RECV_DIR[0])
        flags = [outdir if flag == "" else flag for flag in flags]
        pstats_path = f"{prefix}-listen-{name}.pstats"
        listen = [echo.PY, "-c", _PROFILED, pstats_path, "listen", "--bind", echo.HOST, *flags, str(port)]
        proc = subprocess.Popen(listen, env=echo.PY_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            echo.wait_port(port, proc, timeout=20)
            argv, env = store.client_argv("storescu", port, folder)
            subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            echo.stop(proc)  # SIGTERM: listen returns and cProfile writes its file
            shutil.rmtree(outdir, ignore_errors=True)
        print(f"listen {' '.join(flags)}:")
        print(store.top_frames(pstats_path, 30))


def _tree(tree: str | None) -> None:
    """The children run the dcmnet_cli of ``tree`` (None: this checkout's)."""
    if tree:
        echo.PY_ENV["PYTHONPATH"] = str(Path(tree).resolve())
    else:
        echo.PY_ENV.pop("PYTHONPATH", None)


def compare(before: str, after: str | None, folder: Path, one: Path, shim: Path, reps: int) -> None:
    """Both checkouts, one rep of each row at a time, alternating (the fair comparison on a loaded machine):
    min over the reps of each, CPU µs per object of the dcmnet side."""
    rows = {
        "store → storescp --ignore": lambda: store_side(folder, one, shim, 1, 0),
        "storescu → listen --ignore": lambda: listen_side(folder, one, shim, 1, "ignore"),
        "storescu → listen -od --no-fsync": lambda: listen_side(folder, one, shim, 1, "od-nofsync"),
        "storescu → listen -od --no-fsync --no-index": lambda: listen_side(folder, one, shim, 1, "od-nofsync",
                                                                            ("--no-index",)),
    }
    if CORPUS[0] == "ct":  # the listen side is the question there; store's CT cost is another issue's
        del rows["store → storescp --ignore"]
    best: dict[tuple[str, str], dict[str, float]] = {}
    for _ in range(reps):
        for label, run in rows.items():
            for name, tree in (("before", before), ("after", after)):
                _tree(tree)
                r = run()
                prev = best.get((label, name))
                best[label, name] = r if prev is None else {k: min(prev[k], r[k]) for k in r}
    _tree(None)
    print(f"per object, {COUNT} × {CORPORA[CORPUS[0]][2]}, before = {before}, after = {after or 'this tree'}; interleaved, min of {reps}; "
          "CPU of the dcmnet side, µs")
    for label in rows:
        b, a = best[label, "before"], best[label, "after"]
        print(f"  {label:<46} CPU before {b['cpu_us']:6.1f}  after {a['cpu_us']:6.1f}  ({a['cpu_us'] / b['cpu_us']:.2f}×)"
              f"   wall before {b['wall_us']:6.1f}  after {a['wall_us']:6.1f}")


def main() -> int:
    global COUNT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2, help="runs per measurement (the minimum is kept)")
    ap.add_argument("--tree", help="another checkout's dcmnet_cli")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--profile-only", action="store_true", help="only the profiles (no measurements)")
    ap.add_argument("--dcmtk", action="store_true", help="also DCMTK's own per-object CPU")
    ap.add_argument("--compare", metavar="DIR", help="another checkout as 'before', interleaved with this one")
    ap.add_argument("--out-dir", default=None, help="where -od writes: a folder, 'disk' (bench/out) or 'tmpfs' (default)")
    ap.add_argument("--listen-flag", action="append", default=[], help="add this flag to every dcmnet listen -od "
                    "(e.g. --no-index: the per-object cost of storage alone)")
    ap.add_argument("--corpus", choices=tuple(CORPORA), default="small",
                    help="small: 64×64 MR (~9 KB, default 10 000); ct: 512×512 CT (~0.5 MB, default 300)")
    ap.add_argument("--count", type=int, default=None, help="objects per run (default: the corpus's; a corpus is "
                    "generated once)")
    args = ap.parse_args()
    CORPUS[0] = args.corpus
    if args.out_dir:
        store.RECV_DIR[0] = {"disk": store.OUT, "tmpfs": store.SHM}.get(args.out_dir, Path(args.out_dir))
        store.RECV_DIR[0].mkdir(parents=True, exist_ok=True)
    default_count, side, size = CORPORA[args.corpus]
    COUNT = args.count or default_count
    store.LISTEN_EXTRA.extend(args.listen_flag)
    print(f"-od output under {store.RECV_DIR[0]} ({'tmpfs' if store.is_tmpfs(store.RECV_DIR[0]) else 'disk'})")
    echo.use_tree(args.tree)
    shim = echo.build_shim()
    folder = store.make_corpus(store.Spec(args.corpus, COUNT, side, side, 1, store.CT if args.corpus == "ct" else store.MR))
    one = _folder_of(folder, "one" if args.corpus == "small" else f"one-{args.corpus}")
    store.warm(folder)
    started = time.perf_counter()
    if args.compare:
        compare(args.compare, args.tree, folder, one, shim, args.reps)
        print(f"({time.perf_counter() - started:.0f} s)")
        return 0
    if args.profile_only:
        profile(folder, shim)
        return 0
    rows = {} if args.corpus == "ct" else {"store → storescp --ignore": store_side(folder, one, shim, args.reps, 0)}
    rows |= {
        "storescu → listen --ignore": listen_side(folder, one, shim, args.reps, "ignore"),
        "storescu → listen -od --no-fsync": listen_side(folder, one, shim, args.reps, "od-nofsync"),
        "storescu → listen -od --no-fsync --no-index": listen_side(folder, one, shim, args.reps, "od-nofsync",
                                                                   ("--no-index",)),
    }
    if store.supports_async() and args.corpus == "small":
        rows["store --async 8 → listen --ignore"] = async_side(folder, one, shim, args.reps)
    print(f"per object, {COUNT} × {size} ({'tree ' + args.tree if args.tree else 'this tree'}; min of {args.reps}; "
          f"CPU of the dcmnet side only, µs)")
    for label, r in rows.items():
        print(f"  {label:<52} CPU {r['cpu_us']:6.1f} µs   wall {r['wall_us']:6.1f} µs")
    if args.dcmtk:
        d = dcmtk_side(folder, one, shim, args.reps)
        od = dcmtk_side(folder, one, shim, args.reps, "od-nofsync")
        print(f"  DCMTK: storescu CPU {d['storescu_cpu_us']:.1f} µs, storescp --ignore CPU {d['storescp_cpu_us']:.1f} µs,"
              f" storescp -od CPU {od['storescp_cpu_us']:.1f} µs")
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.profile:
        profile(folder, shim)
    return 0


if __name__ == "__main__":
    sys.exit(main())
