"""Several ``listen`` nodes behind HAProxy (issue 14): what HAProxy and each index backend cost, in one run.

Corpus (generated with pydicom, deterministic, cached under bench/out/corpora/): ``small``, 400 × 64×64
16-bit CT images (~8 KB each; --quick: 150). Every case sends the whole corpus with
``dcmnet store -j 4`` (4 associations) and reports files/s over the client's wall time (start-up
included), the median of ``--reps`` runs; every server is a fresh process per run, on 127.0.0.1, with
fsync on (listen's default). The cases are interleaved rep by rep (a noisy moment hits them all).

    direct              store → listen -od --no-index
    haproxy             store → HAProxy (mode tcp, send-proxy-v2, DICOM check) → the same listen
                        with --proxy-protocol (ratio haproxy/direct: what the hop costs)
    haproxy, 2 nodes    store → HAProxy → two listen nodes on one folder (leastconn)
    sqlite index        store → listen -od (the default SQLite index)
    postgresql index    store → listen -od --index postgresql://… (a throwaway cluster on 127.0.0.1)

    .venv/bin/python bench/cluster.py --quick
    .venv/bin/python bench/cluster.py --reps 5
    .venv/bin/python bench/cluster.py --query       # query latency through either node, 100 000 instances

``--query``: the 100 000-instance index of bench/index.py (1 000 studies; built there, reused) copied
into PostgreSQL (its files hard-linked into a temporary folder), two ``listen`` nodes on that folder with
``--index postgresql://…``, and bench/index.py's two queries (STUDY level, PatientName=SMITH* and a
date range; IMAGE level, one series) timed on each node: median ms from the C-FIND-RQ to the final
response over ``--runs``.

Needs haproxy and the PostgreSQL server binaries (the PostgreSQL case is skipped without them).
Uses the tests' helpers (tests/helpers/postgres.py for the throwaway cluster, tests/store_helpers.py
for the corpus).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from helpers.procs import LOOPBACK, base_env, dcmnet_argv, free_port, running_server, stop_process, wait_port  # noqa: E402
from store_helpers import make_file  # noqa: E402

from dcmnet_cli.services.scp.cluster import haproxy_check  # noqa: E402

OUT = ROOT / "bench" / "out"
AET = "ARCHIVE"


def corpus(count: int) -> Path:
    folder = OUT / "corpora" / f"cluster-small-{count}"
    if not folder.is_dir() or len(list(folder.iterdir())) != count:
        shutil.rmtree(folder, ignore_errors=True)
        tmp = folder.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for n in range(count):
            make_file(tmp, f"bench-{n}", rows=64, columns=64)
        tmp.rename(folder)
    return folder


@contextmanager
def node(stack_dir: Path, shared: Path, *extra: str) -> Iterator[int]:
    port = free_port()
    argv = dcmnet_argv("-q", "listen", "--bind", LOOPBACK, "--shutdown-grace", "1", "-aet", AET, "--no-progress",
                       "-od", str(shared), *extra, str(port))
    with running_server(argv, port, ready_timeout=30) as server:
        yield server.port


@contextmanager
def haproxy(work: Path, ports: list[int]) -> Iterator[int]:
    front = free_port()
    check = "\n".join(f"    {line}" for line in haproxy_check(AET).splitlines())
    servers = "\n".join(f"    server n{i} {LOOPBACK}:{port} check" for i, port in enumerate(ports))
    cfg = work / "haproxy.cfg"
    cfg.write_text(f"""global
    maxconn 256
defaults
    mode tcp
    timeout connect 2s
    timeout check 2s
    timeout client 60s
    timeout server 60s
    option redispatch
frontend dicom
    bind {LOOPBACK}:{front}
    default_backend nodes
backend nodes
    balance leastconn
{check}
    default-server inter 1s fall 2 rise 1 send-proxy-v2 check-send-proxy
{servers}
""")
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(front, proc)
        time.sleep(0.5)  # the first checks
        yield front
    finally:
        stop_process(proc)


def send(port: int, folder: Path) -> float:
    started = time.monotonic()
    done = subprocess.run(dcmnet_argv("-q", "store", "-aec", AET, "-j", "4", LOOPBACK, str(port), str(folder)),
                          capture_output=True, text=True, env=base_env(), timeout=600)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"store failed: {done.stderr[-500:]}")
    return elapsed


def run_case(name: str, folder: Path, count: int, rep: int, pg_url: str | None) -> float:
    """One run of one case: the client's wall time in seconds."""
    times = []
    if True:
        with tempfile.TemporaryDirectory(prefix="dcmnet-bench-cluster-") as tmp:
            work = Path(tmp)
            shared = work / "shared"
            shared.mkdir()
            with ExitStack() as stack:
                if name == "direct":
                    port = stack.enter_context(node(work, shared, "--no-index"))
                elif name.startswith("haproxy"):
                    nodes = 2 if "2 nodes" in name else 1
                    ports = [stack.enter_context(node(work, shared, "--no-index", "--proxy-protocol",
                                                      "--health-check-aet", "HEALTHCHECK", "--node-id", f"n{i}"))
                             for i in range(nodes)]
                    port = stack.enter_context(haproxy(work, ports))
                elif name == "sqlite index":
                    port = stack.enter_context(node(work, shared))
                else:
                    from helpers.postgres import new_database

                    url = new_database(pg_url or "", f"bench_{rep}")  # a fresh, empty index each run
                    port = stack.enter_context(node(work, shared, "--index", url))
                times.append(send(port, folder))
                stored = len([p for p in shared.iterdir() if p.name.endswith(".dcm")])
                if stored != count:
                    raise RuntimeError(f"{name}: {stored} of {count} files stored")
    return times[0]


def copy_index(sqlite_path: Path, url: str, root: Path) -> None:
    """Every row of an SQLite index into the PostgreSQL database ``url`` (schema created first)."""
    import sqlite3

    import psycopg

    from dcmnet_cli.services.archive.postgres import PostgresIndex

    PostgresIndex.open(url, str(root)).close()
    source = sqlite3.connect(str(sqlite_path))
    with psycopg.connect(url) as conn:
        for table in ("patient", "study", "series", "instance"):
            columns = [row[1] for row in source.execute(f"PRAGMA table_info({table})")]
            with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in source.execute(f"SELECT {', '.join(columns)} FROM {table}"):
                    copy.write_row(row)
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'pk'), (SELECT max(pk) FROM {table}))")
    source.close()


def query_latency(runs: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "bench"))
    import index as index_bench  # bench/index.py: the 100 000-instance index and the timed C-FINDs

    from helpers.postgres import new_database, postgres_cluster

    source = OUT / "index-100k"
    index_bench.build(source)
    study, image = index_bench.queries()
    image.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.9.417"
    image.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.9.417.1"
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="dcmnet-bench-q-") as tmp, postgres_cluster() as cluster_url:
        folder = Path(tmp) / "archive"
        subprocess.run(["cp", "-al", str(source), str(folder)], check=True)
        (folder / ".dcmnet-index.sqlite").unlink()
        url = new_database(cluster_url, "q100k")
        started = time.monotonic()
        copy_index(source / ".dcmnet-index.sqlite", url, folder)
        print(f"copied 100 000 rows into PostgreSQL in {time.monotonic() - started:.1f} s", flush=True)
        with ExitStack() as stack:
            ports = {name: stack.enter_context(node(Path(tmp), folder, "--index", url, "--node-id", name))
                     for name in ("node-a", "node-b")}
            for name, port in ports.items():
                index_bench.timed_queries(port, study, 3, called=AET)  # warm-up
                for label, identifier in (("STUDY SMITH* + date range", study), ("IMAGE one series", image)):
                    times, matches = index_bench.timed_queries(port, identifier, runs, called=AET)
                    results[f"{name} {label}"] = statistics.median(times)
                    print(f"{name} {label}: {matches} matches, median {statistics.median(times):.1f} ms", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--query", action="store_true", help="query latency with 100 000 instances instead")
    parser.add_argument("--runs", type=int, default=20, help="queries per node and kind (--query)")
    args = parser.parse_args()
    if args.query:
        latency = query_latency(args.runs)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "cluster-query.json").write_text(json.dumps({"median_ms": latency, "runs": args.runs}, indent=2))
        return 0
    count = 150 if args.quick else 400
    folder = corpus(count)
    cases = ["direct", "haproxy", "haproxy, 2 nodes", "sqlite index", "postgresql index"]
    results: dict[str, float] = {}
    with ExitStack() as stack:
        pg_url = None
        if shutil.which("haproxy") is None:
            print("haproxy not found: the haproxy cases are skipped", file=sys.stderr)
            cases = [c for c in cases if not c.startswith("haproxy")]
        try:
            from helpers.postgres import postgres_cluster

            pg_url = stack.enter_context(postgres_cluster())
        except BaseException as error:  # pytest.skip raises an exception of its own  # noqa: BLE001
            print(f"PostgreSQL unavailable ({error}): that case is skipped", file=sys.stderr)
            cases.remove("postgresql index")
        times: dict[str, list[float]] = {name: [] for name in cases}
        for rep in range(args.reps):  # cases interleaved, so a noisy moment on a shared machine hits them all
            for name in cases:
                times[name].append(run_case(name, folder, count, rep, pg_url))
        for name in cases:
            results[name] = count / statistics.median(times[name])
            print(f"{name:20} {results[name]:8.1f} files/s  (runs: {', '.join(f'{t:.2f}' for t in times[name])} s)",
                  flush=True)
    ratios = {}
    if "haproxy" in results:
        ratios["haproxy / direct"] = results["haproxy"] / results["direct"]
    for name in ("sqlite index", "postgresql index"):
        if name in results:
            ratios[f"{name} / no index"] = results[name] / results["direct"]
    for name, ratio in ratios.items():
        print(f"{name:28} {ratio:6.2f}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "cluster.json").write_text(json.dumps({"files": count, "reps": args.reps, "files_per_s": results,
                                                  "ratios": ratios, "cpus": os.cpu_count()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
