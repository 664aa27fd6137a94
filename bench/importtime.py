"""Start-up, module by module: ``-X importtime`` of a dcmnet command, minimum over runs (the machine's
noise only ever adds), our own modules and the heaviest others.

    .venv/bin/python bench/importtime.py echo          # dcmnet echo against a storescp
    .venv/bin/python bench/importtime.py store         # dcmnet store of one small file into a storescp
    .venv/bin/python bench/importtime.py help          # dcmnet --help
    .venv/bin/python bench/importtime.py store --runs 15 --tree /tmp/before
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import echo  # noqa: E402


def one_run(argv: list[str]) -> tuple[dict[str, tuple[int, int]], float]:
    started = time.perf_counter()
    done = subprocess.run([echo.PY, "-X", "importtime", "-m", "dcmnet_cli", *argv], env=echo.PY_ENV,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"dcmnet {' '.join(argv)} exited {done.returncode}: {done.stderr[-500:]}")
    modules: dict[str, tuple[int, int]] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, total, name = line[len("import time:"):].split("|")
        modules[name.strip()] = (int(own), int(total))
    return modules, wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("echo", "store", "help", "store-help"))
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--tree", help="another checkout's dcmnet_cli")
    args = ap.parse_args()
    echo.use_tree(args.tree)
    corpus = HERE / "out" / "corpora" / "one"
    with echo.storescp() as port:
        argv = {"echo": ["echo", echo.HOST, str(port)], "help": ["--help"], "store-help": ["store", "--help"],
                "store": ["store", "-q", "--no-progress", echo.HOST, str(port), str(corpus)]}[args.command]
        one_run(argv)  # bytecode cache, page cache
        runs = [one_run(argv) for _ in range(args.runs)]
    best: dict[str, tuple[int, int]] = {}
    for modules, _ in runs:
        for name, (own, total) in modules.items():
            prev = best.get(name)
            best[name] = (own, total) if prev is None else (min(prev[0], own), min(prev[1], total))
    walls = sorted(w for _, w in runs)
    ours = {k: v for k, v in best.items() if k.startswith("dcmnet_cli")}
    print(f"dcmnet {' '.join(argv)}: wall median {statistics.median(walls) * 1000:.1f} ms, min {walls[0] * 1000:.1f} ms "
          f"({args.runs} runs); {len(best)} modules, {len(ours)} ours")
    print(f"  sum of self times (min per module): all {sum(v[0] for v in best.values()) / 1000:.1f} ms, "
          f"ours {sum(v[0] for v in ours.values()) / 1000:.1f} ms")
    print("  ours by self time (µs):")
    for name, (own, total) in sorted(ours.items(), key=lambda kv: -kv[1][0])[:args.top]:
        print(f"    {own:7d} {total:8d}  {name}")
    print("  others by self time (µs):")
    others = {k: v for k, v in best.items() if not k.startswith("dcmnet_cli")}
    for name, (own, total) in sorted(others.items(), key=lambda kv: -kv[1][0])[:args.top]:
        print(f"    {own:7d} {total:8d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
