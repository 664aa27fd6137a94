"""Process helpers for the network tests: free ports, DCMTK lookup, servers that always stop.

Every address is 127.0.0.1: these tests never send a packet anywhere else.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

LOOPBACK = "127.0.0.1"
DCMTK_TOOLS = ("storescp", "echoscu")


def shared_dir() -> Path:
    """The project's shared folder (DESIGN.md, scenarios.md): $DCMNET_SHARED or ../../shared."""
    if os.environ.get("DCMNET_SHARED"):
        return Path(os.environ["DCMNET_SHARED"])
    return Path(__file__).resolve().parents[3] / "shared"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def find_dcmtk(tools: Sequence[str] = DCMTK_TOOLS) -> tuple[dict[str, str], list[str]]:
    """Paths of the DCMTK tools found, and the names of those missing."""
    found = {tool: shutil.which(tool) for tool in tools}
    return {k: v for k, v in found.items() if v}, [k for k, v in found.items() if not v]


def base_env(*, dcmtk: bool = False, nagle: bool = False) -> dict[str, str]:
    """The environment for child processes: no user config, no colour; TCP_NODELAY for DCMTK, unless
    ``nagle`` (DCMTK as its users run it: Nagle's algorithm on, its default since 3.6.2)."""
    env = dict(os.environ)
    env["DCMNET_CONFIG"] = str(Path(tempfile.gettempdir()) / "dcmnet-tests-no-such-config.toml")
    env["NO_COLOR"] = "1"
    env.pop("DCMNET_CALLED_AET", None)
    env.pop("DCMNET_CALLING_AET", None)
    if dcmtk and not nagle:
        env["TCP_NODELAY"] = "1"  # without it DCMTK waits ~40 ms (Nagle + delayed ACK) per message
    if nagle:
        env.pop("TCP_NODELAY", None)
    return env


def dcmnet_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "dcmnet_cli", *args]


def run_dcmnet(*args: str, timeout: float = 20.0) -> tuple[int, str, str]:
    """Run ``dcmnet ARGS`` to completion (bounded); returns (exit code, stdout, stderr)."""
    done = subprocess.run(dcmnet_argv(*args), capture_output=True, text=True, timeout=timeout, env=base_env(),
                          stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


def run_tool(argv: Sequence[str], timeout: float = 20.0, nagle: bool = False) -> tuple[int, str, str]:
    """Run a DCMTK tool (with TCP_NODELAY, unless ``nagle``: see :func:`base_env`) to completion; returns
    (exit code, stdout, stderr)."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          env=base_env(dcmtk=True, nagle=nagle),
                          stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


def stop_process(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``; always reaps."""
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        except ProcessLookupError:
            pass


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    port: int
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_bytes(self) -> bytes:
        return self.stderr_path.read_bytes()

    def stderr(self) -> str:
        return self.stderr_bytes().decode("utf-8", "replace")

    def stdout(self) -> str:
        return self.stdout_path.read_bytes().decode("utf-8", "replace")

    def mark(self) -> int:
        """The current end of the captured stderr, for :meth:`wait_for_stderr` ``since``."""
        return len(self.stderr_bytes())

    def wait_for_stderr(self, text: str, timeout: float = 15.0, since: int = 0) -> bool:
        """Poll the captured stderr (from byte ``since``) until ``text`` appears; False after ``timeout``
        (generous: it only runs out when the line never comes, and a loaded CI machine is slow)."""
        needle = text.encode()
        return wait_until(lambda: needle in self.stderr_bytes()[since:], timeout)

    def wait_for_stdout(self, text: str, timeout: float = 15.0) -> bool:
        """Poll the captured stdout until ``text`` appears; False after ``timeout``."""
        return wait_until(lambda: text in self.stdout(), timeout)


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 10.0) -> None:
    """Block until 127.0.0.1:port accepts a TCP connection (bounded); fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening on port {port}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listening on {LOOPBACK}:{port} after {timeout:g} s") from None
            time.sleep(0.02)


@contextmanager
def running_server(argv: Sequence[str], port: int, *, dcmtk: bool = False, nagle: bool = False,
                   cwd: str | Path | None = None,
                   ready_timeout: float = 10.0, stop_timeout: float = 5.0,
                   ready: Callable[["ServerProcess"], bool] | None = None) -> Iterator[ServerProcess]:
    """Start a server process listening on ``port``, wait until it accepts (and, with ``ready``, until
    ``ready(server)`` is true: e.g. its start-up line is written), and always stop it.

    stdout and stderr go to temporary files (never pipes: a chatty server cannot block on a full pipe).
    The port accepts as soon as the server called listen(), a moment before it writes its start-up line:
    a test that reads that line right after start-up must wait for it (a flake seen under load).
    """
    workdir = Path(tempfile.mkdtemp(prefix="dcmnet-srv-"))
    out_path, err_path = workdir / "stdout", workdir / "stderr"
    proc: subprocess.Popen | None = None
    try:
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(list(argv), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    env=base_env(dcmtk=dcmtk, nagle=nagle), cwd=str(cwd or workdir),
                                    preexec_fn=_default_sigint)
        try:
            wait_port(port, proc, ready_timeout)
            server = ServerProcess(proc, port, out_path, err_path)
            if ready is not None and not wait_until(lambda: ready(server) or not server.alive(), ready_timeout):
                raise RuntimeError(f"server not ready within {ready_timeout:g} s (exit code {proc.poll()})")
        except RuntimeError as error:
            raise RuntimeError(f"{error}\n--- stderr ---\n{err_path.read_text(errors='replace')}") from None
        yield server
    finally:
        if proc is not None:
            stop_process(proc, stop_timeout)
        shutil.rmtree(workdir, ignore_errors=True)


def listen_server(*args: str, port: int | None = None, **kwargs) -> "contextmanager[ServerProcess]":
    """``dcmnet listen`` on 127.0.0.1 with a short shutdown grace; extra ``args`` go before PORT.

    Ready once it accepts and has announced itself (the ``listening`` line on stderr, or its JSON event
    on stdout with --json), so a test may read that line at once."""
    port = port or free_port()
    argv = dcmnet_argv("-v", "listen", "--bind", LOOPBACK, "--shutdown-grace", "1", *args, str(port))
    kwargs.setdefault("ready", listen_announced(args))
    return running_server(argv, port, **kwargs)


def listen_announced(args: Sequence[str]) -> Callable[[ServerProcess], bool] | None:
    """The check that ``dcmnet listen ARGS`` wrote its ``listening`` line (None with -q: it writes none)."""
    if "--json" in args:
        return lambda server: '"event":"listening"' in server.stdout()
    if "-q" in args or "--quiet" in args:
        return None
    return lambda server: b"listening on " in server.stderr_bytes()


def wait_until(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll ``condition`` until it is true (True) or ``timeout`` seconds passed (False). The timeout only
    matters when something is really wrong: use a generous one, never a measure of how fast things are."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def _default_sigint() -> None:
    """Children get the default SIGINT even when the test runner was started with SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def serving(handler: object, name: str = "test-scp", **options: object) -> Iterator[int]:
    """Our own ``Server`` for ``handler`` on a free 127.0.0.1 port, in a thread; always stopped and joined.
    ``options``: more :class:`Server` fields (``max_receive``, ``network_timeout``...)."""
    import threading

    from dcmnet_cli.transport.server import Server

    server = Server(handler, host=LOOPBACK, port=0, artim_timeout=5.0, **options)  # type: ignore[arg-type]
    port = server.bind()
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.stop(grace=2.0)
        thread.join(5.0)
        assert not thread.is_alive(), f"{name} did not stop"


def run_on_pty(argv: Sequence[str], env: dict[str, str], timeout: float = 30.0,
               columns: int | None = None) -> tuple[int, str, str]:
    """Run ``argv`` with stdout on a pseudo-terminal (``columns`` wide when given): what a user at a
    terminal sees. Returns (exit code, stdout text with CRLF as LF, stderr text)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    if columns is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    try:
        proc = subprocess.run(list(argv), stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                              timeout=timeout)
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO once the child's side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)
    out = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return proc.returncode, out, proc.stderr.decode("utf-8", "replace")
