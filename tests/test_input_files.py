"""The small files a user names (config, query file, --from-json, users file, JWT key, SAML assertion,
TLS files): a FIFO nobody writes to must not block the command for ever, a device is not read without
end, a pipe (``<(...)``) still works, and bytes that are not UTF-8 are a usage error, not exit 70."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import subprocess

import pytest

from dcmnet_cli.transport.inputfiles import read_limited, regular_or_copy
from helpers.bounded import QUICK, bounded
from helpers.procs import LOOPBACK, base_env, dcmnet_argv, free_port

def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run(dcmnet_argv(*args), capture_output=True, text=True, timeout=QUICK,
                          env={**base_env(), **(env or {})}, stdin=subprocess.DEVNULL)
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    return done.returncode, done.stderr


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "nobody-writes.fifo"
    os.mkfifo(path)
    return path


# --------------------------------------------------------------------------- read_limited


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 300_000)
    assert read_limited(path, 300_000) == b"x" * 300_000


def test_more_than_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 101)
    with pytest.raises(OSError) as caught:
        read_limited(path, 100)
    assert caught.value.errno == errno.EFBIG and caught.value.strerror == "larger than 100 bytes"
    assert caught.value.filename == str(path)  # the callers' messages name the file


def test_a_pipe_that_gives_more_than_the_limit_in_pieces_is_refused_not_cut() -> None:
    """A short read that reaches the limit exactly is not the end: the rest must be looked for, or a config
    (or key) longer than the limit would be taken cut short."""
    read_end, write_end = os.pipe()

    def writer() -> None:
        os.write(write_end, b"a" * 100)
        time.sleep(0.3)  # the first read returns these 100 alone
        os.write(write_end, b"b" * 50)
        os.close(write_end)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with pytest.raises(OSError) as caught:
            bounded(read_limited, f"/proc/self/fd/{read_end}", 100)
        assert caught.value.errno == errno.EFBIG
    finally:
        thread.join()
        os.close(read_end)


def test_a_fifo_without_a_writer_reads_as_empty_at_once(fifo: Path) -> None:
    assert bounded(read_limited, fifo, 100) == b""


def test_a_pipe_is_read_to_its_end() -> None:
    """What ``--tls-ca <(cat ca.pem)`` hands us: ``/dev/fd/N``, the read end of a pipe with a writer."""
    read_end, write_end = os.pipe()
    try:
        writer = threading.Thread(target=lambda: (os.write(write_end, b"a" * 100_000), os.close(write_end)))
        writer.start()
        assert bounded(read_limited, f"/proc/self/fd/{read_end}", 1 << 20) == b"a" * 100_000
        writer.join()
    finally:
        os.close(read_end)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_is_refused(device: str) -> None:
    with pytest.raises(OSError) as caught:
        bounded(read_limited, device, 1 << 30)
    assert (caught.value.errno, caught.value.strerror, caught.value.filename) == (
        errno.EINVAL, "not a file or pipe (a device or socket)", device)


def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OSError) as caught:
        read_limited(tmp_path, 10)
    assert (caught.value.errno, caught.value.strerror, caught.value.filename) == (errno.EISDIR, "is a folder", str(tmp_path))


def test_a_regular_file_is_handed_on_by_name_and_a_pipe_as_a_memory_copy(tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    path.write_bytes(b"pem")
    assert regular_or_copy(str(path), 10) == (str(path), None)
    read_end, write_end = os.pipe()
    os.write(write_end, b"from a pipe")
    os.close(write_end)
    try:
        usable, fd = regular_or_copy(f"/proc/self/fd/{read_end}", 100)
    finally:
        os.close(read_end)
    assert fd is not None
    try:
        assert Path(usable).read_bytes() == b"from a pipe"  # the library may open it again and again
        assert Path(usable).read_bytes() == b"from a pipe"
    finally:
        os.close(fd)


def test_a_memory_copy_that_cannot_be_written_is_an_os_error(monkeypatch) -> None:
    """Out of memory while copying a pipe: the OSError the TLS loader turns into its one-line message."""
    import dcmnet_cli.transport.inputfiles as inputfiles

    read_end, write_end = os.pipe()
    os.write(write_end, b"pem")
    os.close(write_end)

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(inputfiles.os, "write", full)
    try:
        with pytest.raises(OSError) as caught:
            regular_or_copy(f"/proc/self/fd/{read_end}", 100)
        assert caught.value.errno == errno.ENOMEM
    finally:
        os.close(read_end)


# --------------------------------------------------------------------------- through the commands


def test_a_config_file_that_is_a_fifo_or_a_device_or_not_utf8(fifo: Path, tmp_path: Path) -> None:
    closed = str(free_port())
    code, err = run("echo", LOOPBACK, closed, env={"DCMNET_CONFIG": str(fifo)})
    assert code == 4, err  # read as an empty config: the echo itself ran (and found nobody listening)
    code, err = run("echo", LOOPBACK, closed, env={"DCMNET_CONFIG": "/dev/zero"})
    assert code == 2 and "cannot read /dev/zero: not a file or pipe (a device or socket)" in err, err
    bad = tmp_path / "config.toml"
    bad.write_bytes(b"\xff\xfe[defaults]\n")
    code, err = run("echo", LOOPBACK, closed, env={"DCMNET_CONFIG": str(bad)})
    assert code == 2 and f"cannot read {bad}: not UTF-8 text" in err, err


def test_a_query_file_that_is_a_fifo_or_a_device(fifo: Path) -> None:
    code, err = run("find", LOOPBACK, str(free_port()), "-f", str(fifo))
    assert code == 3 and "no data elements" in err, err
    code, err = run("find", LOOPBACK, str(free_port()), "-f", "/dev/zero")
    assert code == 3 and "cannot read query file /dev/zero: not a file or pipe" in err, err


@pytest.mark.parametrize("command", ["move", "get"])
def test_from_json_that_is_a_fifo_a_device_or_not_utf8(command: str, fifo: Path, tmp_path: Path) -> None:
    extra = ("--move-destination", "NOWHERE") if command == "move" else ()
    code, err = run(command, LOOPBACK, str(free_port()), *extra, "--from-json", str(fifo))
    assert code == 0 and "nothing to " in err and "no usable line" in err, err  # as an empty file
    code, err = run(command, LOOPBACK, str(free_port()), *extra, "--from-json", "/dev/zero")
    assert code == 2 and "--from-json: cannot read /dev/zero: not a file or pipe" in err, err
    bad = tmp_path / "matches.ndjson"
    bad.write_bytes(b'{"0020000D": {"vr": "UI", "Value": ["1.2"]}}\n\xff\n')
    code, err = run(command, LOOPBACK, str(free_port()), *extra, "--from-json", str(bad))
    assert code == 2 and f"--from-json: {bad} is not UTF-8 text (line 2)" in err, err


def test_listen_identity_files_that_are_fifos_or_devices(fifo: Path, tmp_path: Path) -> None:
    code, err = run("listen", "--bind", LOOPBACK, "--jwt-key", str(fifo), str(free_port()))
    assert code == 2 and "is an HMAC secret of 0 bytes" in err, err
    code, err = run("listen", "--bind", LOOPBACK, "--jwt-key", "/dev/urandom", str(free_port()))
    assert code == 2 and "cannot read the JWT key /dev/urandom: not a file or pipe" in err, err
    code, err = run("listen", "--bind", LOOPBACK, "--users", "/dev/zero", str(free_port()))
    assert code == 2 and "cannot read the users file /dev/zero: not a file or pipe" in err, err


def test_a_saml_assertion_from_a_fifo_or_a_device(fifo: Path) -> None:
    code, err = run("echo", "--saml", str(fifo), LOOPBACK, str(free_port()))
    assert code == 2 and f"--saml: {fifo} is empty" in err, err
    code, err = run("echo", "--saml", "/dev/zero", LOOPBACK, str(free_port()))
    assert code == 2 and "--saml: cannot read /dev/zero: not a file or pipe" in err, err


@pytest.mark.parametrize("option", ["--tls-ca", "--tls-cert"])
def test_tls_files_that_are_fifos_or_devices(option: str, fifo: Path) -> None:
    for given in (str(fifo), "/dev/zero"):
        code, err = run("echo", "--tls", option, given, LOOPBACK, str(free_port()))
        assert code == 2 and "cannot load " in err and given in err, err
