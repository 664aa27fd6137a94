"""An SCU pointed at an HTTP port is told so ("speaks HTTP, not DICOM"), exit 6 as before.

The web servers here are one-shot sockets on 127.0.0.1 that read our A-ASSOCIATE-RQ and answer the way
an HTTP server answers bytes it cannot parse; each is closed by the test.
"""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from typing import Iterator

import pytest

from dcmnet_cli.cli.exitcodes import ExitCode
from dcmnet_cli.cli.main import main

LOOPBACK = "127.0.0.1"
HTTP_400 = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nBad Request"
HTML_400 = (b"<!DOCTYPE HTML>\n<html lang=\"en\">\n<head><title>Error response</title></head>\n"
            b"<body><h1>Error response</h1><p>Error code: 400</p></body></html>\n")
DICOM_JUNK = b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x01"  # an A-ABORT: a DICOM answer, no web hint


@contextmanager
def answering(reply: bytes) -> Iterator[int]:
    """A listener on a free 127.0.0.1 port that answers each connection's first bytes with ``reply``."""
    server = socket.socket()
    server.bind((LOOPBACK, 0))
    server.listen(4)
    server.settimeout(10)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    conn.sendall(reply)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()
        thread.join(5)


def dcmnet(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return int(done.value.code), out, err


@pytest.mark.parametrize(("reply", "shown"), [(HTTP_400, "HTTP/1.1 400 Bad Request"), (HTML_400, "<!DOCTYPE HTML>")])
def test_an_http_port_is_named(capsys, reply: bytes, shown: str) -> None:
    with answering(reply) as port:
        code, _, err = dcmnet(capsys, "echo", LOOPBACK, str(port))
    assert code == ExitCode.ABORTED
    assert f"{LOOPBACK}:{port} speaks HTTP, not DICOM" in err and shown in err, err
    assert "unrecognised PDU type" not in err and "Traceback" not in err


def test_a_dicom_abort_is_not_mistaken_for_http(capsys) -> None:
    with answering(DICOM_JUNK) as port:
        code, _, err = dcmnet(capsys, "echo", LOOPBACK, str(port))
    assert code == ExitCode.ABORTED and "HTTP" not in err, err
