"""Two ``listen`` nodes behind HAProxy on one shared folder (issue 14), end to end on 127.0.0.1.

HAProxy (mode tcp, leastconn, ``send-proxy-v2``, the DICOM ``tcp-check`` printed by
``listen --print-health-check``) in front of two nodes with ``--proxy-protocol --health-check-aet
--node-id``. Checked: 4 senders through HAProxy store every object once; the PROXY protocol's source
address reaches the events and the association-end hook (with DCMNET_FILES and DCMNET_NODE_ID); the
checks are not logged without -v; kill -9 of a node mid-run: senders with --retries finish, nothing is
lost, no temporary is left after the node restarts and its cleanup spares the other node's temporaries;
SIGSTOP of a node: the check takes it out within a few seconds and senders succeed.
HAProxy missing: skipped, or failed when CI=true (.ci/run installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from helpers.procs import (LOOPBACK, base_env, dcmnet_argv, free_port, listen_announced, running_server, stop_process,
                           wait_port, wait_until)
from helpers.rawdicom import make_rq, read_pdu, release
from store_helpers import make_file
from dcmnet_cli.services.scp.cluster import haproxy_check
from dcmnet_cli.ul.pdu import AssociateAC

AET = "ARCHIVE"
CHECK_AET = "HEALTHCHECK"
HOOK = """\
import json, os, sys, uuid
files = open(os.environ["DCMNET_FILES"], encoding="utf-8").read().splitlines()
record = {k: os.environ.get(k) for k in ("DCMNET_PEER", "DCMNET_NODE_ID", "DCMNET_COUNT", "DCMNET_REMOTE_AET")}
record["files"] = files
name = os.path.join(sys.argv[1], uuid.uuid4().hex)
with open(name + ".tmp", "w") as out:
    json.dump(record, out)
os.replace(name + ".tmp", name + ".json")
"""


@pytest.fixture(scope="module")
def haproxy() -> str:
    return require_haproxy()


def require_haproxy() -> str:
    """HAProxy's path; skipped without it, failed when CI=true."""
    path = shutil.which("haproxy")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("haproxy not found on PATH (.ci/run installs it)")
        pytest.skip("haproxy not found on PATH")
    return path


class Cluster:
    """Two nodes (a, b) on one shared folder behind one HAProxy; everything stopped by the fixture."""

    def __init__(self, stack: ExitStack, tmp: Path, haproxy: str, node_args: tuple[str, ...] = ("--no-index",)) -> None:
        self.stack, self.tmp, self.haproxy, self.node_args = stack, tmp, haproxy, node_args
        self.shared = tmp / "shared"
        self.hooks = tmp / "hooks"
        self.shared.mkdir()
        self.hooks.mkdir()
        (tmp / "hook.py").write_text(HOOK)
        self.ports = {"a": free_port(), "b": free_port()}
        self.nodes: dict[str, object] = {}
        self.logs: dict[str, list] = {"a": [], "b": []}
        self.front = free_port()
        self.direct = {name: free_port() for name in self.ports}
        """Per node, a port of HAProxy's that reaches only that node (still with the PROXY header)."""

    def start_nodes(self, *names: str) -> None:
        """Start nodes at the same time (each waits for its port)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(names)) as pool:
            contexts = list(pool.map(self._started, names))
        for name, context in contexts:
            self.nodes[name] = context
            self.logs[name].append(context)

    def _started(self, name: str):
        hook = f"{sys.executable} {self.tmp / 'hook.py'} {self.hooks}"
        argv = dcmnet_argv("listen", "--bind", LOOPBACK, "--shutdown-grace", "1", "-aet", AET, "--json",
                           "--proxy-protocol", "--health-check-aet", CHECK_AET, "--node-id", f"node-{name}",
                           *self.node_args, "--artim-timeout", "5", "-od", str(self.shared),
                           "--exec-on-association-end", hook, str(self.ports[name]))
        return name, self.stack.enter_context(running_server(argv, self.ports[name],
                                                             ready=listen_announced(["--json"])))

    def start_node(self, name: str) -> None:
        self.start_nodes(name)

    def config(self) -> str:
        check = haproxy_check(AET, CHECK_AET)  # what listen --print-health-check prints (tested below)
        servers = "\n".join(f"    server {name} {LOOPBACK}:{port} check maxconn 16"
                            for name, port in self.ports.items())
        direct = "\n".join(f"listen direct_{name}\n    bind {LOOPBACK}:{self.direct[name]}\n"
                           f"    server {name} {LOOPBACK}:{port} send-proxy-v2"
                           for name, port in self.ports.items())
        return f"""global
    maxconn 256
    stats socket {self.tmp / 'admin.sock'} mode 600 level admin
defaults
    mode tcp
    timeout connect 1s
    timeout check 1s
    timeout client 30s
    timeout server 30s
    retries 2
    option redispatch
frontend dicom
    bind {LOOPBACK}:{self.front}
    default_backend nodes
backend nodes
    balance leastconn
{_indent(check)}
    default-server inter 300ms fall 2 rise 1 send-proxy-v2 check-send-proxy
{servers}
{direct}
"""

    def start_haproxy(self) -> None:
        cfg = self.tmp / "haproxy.cfg"
        for attempt in range(3):
            # free_port() only picks a port: another process may take it before HAProxy binds it (seen
            # once in CI). Then pick HAProxy's ports again; any other failure is the test's.
            cfg.write_text(self.config())
            log = self.tmp / "haproxy.err"
            err = open(log, "wb")
            self.stack.callback(err.close)
            proc = subprocess.Popen([self.haproxy, "-db", "-f", str(cfg)], stdout=err, stderr=err,
                                    stdin=subprocess.DEVNULL)
            self.stack.callback(stop_process, proc)
            try:
                wait_port(self.front, proc)
                break
            except RuntimeError:
                if attempt == 2 or b"Address already in use" not in log.read_bytes():
                    raise
                self.front = free_port()
                self.direct = {name: free_port() for name in self.ports}
        deadline = time.monotonic() + 5
        while not (self.tmp / "admin.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.wait_state({"a": "UP", "b": "UP"}, 15.0), self.states()

    def states(self) -> dict[str, str]:
        """Each server's status as HAProxy's stats socket says (UP, DOWN, ...)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2.0)
            sock.connect(str(self.tmp / "admin.sock"))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        lines = data.decode().splitlines()
        fields = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(fields, line.split(","))) for line in lines[1:] if line]
        return {r["svname"]: r["status"].split(" ")[0] for r in rows if r["pxname"] == "nodes" and r["svname"] in self.ports}

    def wait_state(self, wanted: dict[str, str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.states() == wanted:
                return True
            time.sleep(0.05)
        return False

    def events(self, name: str) -> list[dict]:
        return [json.loads(line) for server in self.logs[name] for line in server.stdout().splitlines()
                if line.startswith("{")]

    def send(self, folder: Path, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(dcmnet_argv("store", "-aec", AET, "-aet", folder.name.upper(), "--retries", "5",
                                            "--retry-delay", "0.2", "-ta", "5", "-td", "10", *extra,
                                            LOOPBACK, str(self.front), str(folder)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base_env(),
                                stdin=subprocess.DEVNULL)


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


@pytest.fixture
def cluster(haproxy, tmp_path):
    with ExitStack() as stack:
        c = Cluster(stack, tmp_path, haproxy)
        c.start_nodes("a", "b")
        c.start_haproxy()
        yield c


def _senders(tmp: Path, count: int, per: int, side: int = 32) -> list[Path]:
    folders = []
    for s in range(count):
        folder = tmp / f"sender{s}"
        for i in range(per):
            make_file(folder, f"s{s}-{i}", rows=side, columns=side)
        folders.append(folder)
    return folders


def _finish(procs: list[subprocess.Popen], timeout: float = 30.0) -> str:
    """Wait for every sender (each must exit 0); their stderr together."""
    errors = ""
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err
        errors += err
    return errors


def _stored(shared: Path) -> list[Path]:
    return sorted(p for p in shared.iterdir() if p.name.endswith(".dcm"))


def _temps(shared: Path) -> list[Path]:
    return sorted(p for p in shared.iterdir() if p.name.startswith(".dcmnet-tmp-"))


def test_four_senders_proxied_addresses_hooks_and_quiet_checks(cluster):
    folders = _senders(cluster.tmp, 4, 10)
    _finish([cluster.send(folder) for folder in folders])
    assert len(_stored(cluster.shared)) == 40 and not _temps(cluster.shared)
    # A raw client from a known source port: its address, not HAProxy's, is the peer nodes report.
    with socket.socket() as raw:
        raw.bind((LOOPBACK, 0))
        raw.settimeout(3.0)
        raw.connect((LOOPBACK, cluster.front))
        source = f"{LOOPBACK}:{raw.getsockname()[1]}"
        raw.sendall(make_rq(called=AET, calling="RAWSENDER").encode())
        assert isinstance(read_pdu(raw, 3.0), AssociateAC)
        release(raw)

    def ends_now() -> list[dict]:
        return [e for e in cluster.events("a") + cluster.events("b") if e["event"] == "association"]

    # a node writes an association's event after it closed: wait for the raw one's and the senders' 40
    assert wait_until(lambda: [e for e in ends_now() if e["calling_ae"] == "RAWSENDER"]
                      and sum(e["stored"] for e in ends_now()) >= 40), ends_now()
    events = cluster.events("a") + cluster.events("b")
    ends = [e for e in events if e["event"] == "association"]
    assert {e["node"] for e in events} == {"node-a", "node-b"}  # every event names its node
    assert [e["peer"] for e in ends if e["calling_ae"] == "RAWSENDER"] == [source]
    assert not [e for e in ends if e["calling_ae"] == CHECK_AET]  # checks ran, but are not logged without -v
    assert sum(e["stored"] for e in ends) == 40
    deadline = time.monotonic() + 15  # hooks run after their association's event, in processes of their own
    while True:
        hooks = [json.loads(p.read_text()) for p in cluster.hooks.glob("*.json")]
        if sum(len(h["files"]) for h in hooks) >= 40 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    peers = {e["peer"] for e in ends if e["stored"]}
    assert sorted(f for h in hooks for f in h["files"]) == [str(p) for p in _stored(cluster.shared)]
    assert {h["DCMNET_PEER"] for h in hooks} == peers and {h["DCMNET_NODE_ID"] for h in hooks} <= {"node-a", "node-b"}
    assert all(int(h["DCMNET_COUNT"]) == len(h["files"]) for h in hooks)


def test_kill9_mid_run_nothing_lost_and_cleanup_spares_the_other_node(cluster):
    folders = _senders(cluster.tmp, 4, 40, side=64)  # 8 KiB each, sent at 0.1 MB/s: ~3 s per sender
    # Temporaries as a crash of each node would leave them: node-a's restart removes its own only.
    orphan_a = cluster.shared / ".dcmnet-tmp-node-a~0123456789abcdef-0.part"
    orphan_b = cluster.shared / ".dcmnet-tmp-node-b~0123456789abcdef-0.part"
    orphan_a.write_bytes(b"partial")
    orphan_b.write_bytes(b"partial")
    procs = [cluster.send(folder, "--max-rate", "0.1") for folder in folders]
    node_a = cluster.nodes["a"]
    deadline = time.monotonic() + 10
    while '"stored"' not in node_a.stdout() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(node_a.pid, signal.SIGKILL)
    node_a.proc.wait(5)
    cluster.start_node("a")  # same port, same node id: its start-up cleanup runs now
    assert not orphan_a.exists() and orphan_b.exists()
    errors = _finish(procs, 45.0)
    assert "retrying" in errors  # the kill did cut associations
    assert len(_stored(cluster.shared)) == 160
    b_events = cluster.events("b")
    assert not [e for e in b_events if e["event"] == "store-failed"]  # node-b's in-flight stores unaffected
    assert _temps(cluster.shared) == [orphan_b]


def test_sigstop_node_taken_out_by_the_check(cluster):
    node_b = cluster.nodes["b"]
    os.kill(node_b.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert cluster.wait_state({"a": "UP", "b": "DOWN"}, 5.0), cluster.states()
        taken_out = time.monotonic() - started
        folders = _senders(cluster.tmp, 4, 5)
        began = time.monotonic()
        _finish([cluster.send(folder) for folder in folders], 20.0)
        assert time.monotonic() - began < 10.0
        assert len(_stored(cluster.shared)) == 20 and taken_out < 4.0
    finally:
        os.kill(node_b.pid, signal.SIGCONT)


def test_print_health_check_is_the_encoder_s_request():
    code = subprocess.run(dcmnet_argv("listen", "-aet", AET, "--health-check-aet", CHECK_AET, "--print-health-check",
                                      "0"), capture_output=True, text=True, timeout=20, env=base_env())
    assert code.returncode == 0 and code.stdout.strip() == haproxy_check(AET, CHECK_AET)
    lines = code.stdout.splitlines()
    request = next(line for line in lines if line.startswith("tcp-check send-binary 01"))
    raw = bytes.fromhex(request.split()[-1])
    from dcmnet_cli.ul.pdu import decode_pdu_bytes

    rq = decode_pdu_bytes(raw)
    assert rq.calling_ae == CHECK_AET and rq.called_ae == AET
    assert "tcp-check expect rbinary ^02" in lines and "tcp-check expect rbinary ^06" in lines
    assert lines.index("tcp-check expect rbinary ^02") > lines.index(request)
    bad = subprocess.run(dcmnet_argv("listen", "--node-id", "a/b", "0"), capture_output=True, text=True, timeout=20,
                         env=base_env())
    assert bad.returncode == 2 and "--node-id" in bad.stderr and "Traceback" not in bad.stderr
