"""Start-up, module by module: ``-X importtime`` of a dcmnet command, minimum over runs (the machine's
noise only ever adds), our own modules and the heaviest others.

    .venv/bin/python bench/importtime.py echo          # dcmnet echo against a storescp
    .venv/bin/python bench/importtime.py store         # dcmnet store of one small file into a storescp
    .venv/bin/python bench/importtime.py help          # dcmnet --help
    .venv/bin/python bench/importtime.py store --runs 15 --tree /tmp/before
    .venv/bin/python bench/importtime.py import                      # python -c "import dcmnet_cli.services.scu.echo"
    .venv/bin/python bench/importtime.py import --module dcmnet_cli.services.scu.find --cpu 20 --against /tmp/before

``import`` measures a module's import without click or a peer (the echo, store and find paths once the CLI
is out of the way). ``--cpu N`` adds whole-process CPU time (user+sys from ``os.wait4``: the machine's
other load does not count) over N runs, interleaved with ``python -c pass`` and, with ``--against TREE``,
with the same command on another checkout; min and median per variant.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import echo  # noqa: E402


def one_run(argv: list[str]) -> tuple[dict[str, tuple[int, int]], float]:
    """``argv`` is a dcmnet command line, or ``["-c", code]`` for plain Python."""
    started = time.perf_counter()
    head = [] if argv[0] == "-c" else ["-m", "dcmnet_cli"]
    done = subprocess.run([echo.PY, "-X", "importtime", *head, *argv], env=echo.PY_ENV, cwd="/",  # see cpu_ms
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-500:]}")
    modules: dict[str, tuple[int, int]] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, total, name = line[len("import time:"):].split("|")
        modules[name.strip()] = (int(own), int(total))
    return modules, wall


def cpu_ms(python_args: list[str], env: dict[str, str]) -> float:
    """User+sys CPU milliseconds of one whole child process, started in ``/``: ``-c`` and ``-m`` put the
    current folder first on sys.path, which from a checkout would shadow --against's PYTHONPATH."""
    here = os.getcwd()
    os.chdir("/")
    try:
        pid = os.spawnve(os.P_NOWAIT, echo.PY, [echo.PY, *python_args], env)
    finally:
        os.chdir(here)
    _, status, usage = os.wait4(pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(python_args)} failed (wait status {status})")
    return (usage.ru_utime + usage.ru_stime) * 1000


def cpu_report(python_args: list[str], runs: int, against: str | None) -> None:
    variants = {"python -c pass": (["-c", "pass"], echo.PY_ENV), "this tree": (python_args, echo.PY_ENV)}
    if against:
        variants[against] = (python_args, {**echo.PY_ENV, "PYTHONPATH": str(Path(against).resolve())})
    for args, env in variants.values():
        cpu_ms(args, env)  # bytecode cache, page cache
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):  # interleaved: drift in the machine's load hits every variant alike
        for name, (args, env) in variants.items():
            samples[name].append(cpu_ms(args, env))
    print(f"  whole-process CPU (user+sys), {runs} interleaved runs:")
    for name, values in samples.items():
        print(f"    {name:40s} min {min(values):6.1f} ms  median {statistics.median(values):6.1f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("echo", "store", "help", "store-help", "import"))
    ap.add_argument("--module", default="dcmnet_cli.services.scu.echo", help="for import: the module to import")
    ap.add_argument("--cpu", type=int, default=0, metavar="N", help="also N interleaved whole-process CPU runs")
    ap.add_argument("--against", metavar="TREE", help="with --cpu: another checkout's dcmnet_cli, interleaved")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--tree", help="another checkout's dcmnet_cli")
    args = ap.parse_args()
    echo.use_tree(args.tree)
    corpus = HERE / "out" / "corpora" / "one"
    server = contextlib.nullcontext(0) if args.command == "import" else echo.storescp()
    with server as port:
        argv = {"echo": ["echo", echo.HOST, str(port)], "help": ["--help"], "store-help": ["store", "--help"],
                "import": ["-c", f"import {args.module}"],
                "store": ["store", "-q", "--no-progress", echo.HOST, str(port), str(corpus)]}[args.command]
        one_run(argv)  # bytecode cache, page cache
        runs = [one_run(argv) for _ in range(args.runs)]
        report(argv, runs, args.top)
        if args.cpu:
            cpu_report(argv if argv[0] == "-c" else ["-m", "dcmnet_cli", *argv], args.cpu, args.against)
    return 0


def report(argv: list[str], runs: list[tuple[dict[str, tuple[int, int]], float]], top: int) -> None:
    best: dict[str, tuple[int, int]] = {}
    for modules, _ in runs:
        for name, (own, total) in modules.items():
            prev = best.get(name)
            best[name] = (own, total) if prev is None else (min(prev[0], own), min(prev[1], total))
    walls = sorted(w for _, w in runs)
    ours = {k: v for k, v in best.items() if k.startswith("dcmnet_cli")}
    what = " ".join(argv[1:]) if argv[0] == "-c" else "dcmnet " + " ".join(argv)
    print(f"{what}: wall median {statistics.median(walls) * 1000:.1f} ms, min {walls[0] * 1000:.1f} ms "
          f"({len(runs)} runs); {len(best)} modules, {len(ours)} ours")
    print(f"  sum of self times (min per module): all {sum(v[0] for v in best.values()) / 1000:.1f} ms, "
          f"ours {sum(v[0] for v in ours.values()) / 1000:.1f} ms")
    print("  ours by self time (µs):")
    for name, (own, total) in sorted(ours.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"    {own:7d} {total:8d}  {name}")
    print("  others by self time (µs):")
    others = {k: v for k, v in best.items() if not k.startswith("dcmnet_cli")}
    for name, (own, total) in sorted(others.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"    {own:7d} {total:8d}  {name}")

if __name__ == "__main__":
    sys.exit(main())
