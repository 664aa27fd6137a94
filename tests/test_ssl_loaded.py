"""TLS checks without importing ``ssl`` must survive a half-imported ``ssl`` (another thread's first import):
before, ``listen`` aborted a storing association with "partially initialised module 'ssl' has no
attribute 'SSLSocket'" while a C-FIND handler was loading pydicom (which imports ssl)."""

from __future__ import annotations

import socket
import sys
import types

import pytest

from dcmnet_cli.transport.ssl_loaded import ssl_classes
from dcmnet_cli.transport.writes import is_tls


class _Wrapped(socket.socket):
    """Not a plain socket: is_tls has to look at ssl's classes."""


def test_half_imported_ssl_means_not_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ssl", types.ModuleType("ssl"))  # no classes yet
    assert ssl_classes("SSLSocket") == ()
    assert ssl_classes("SSLWantReadError", "SSLWantWriteError") == ()
    with _Wrapped() as sock:
        assert is_tls(sock) is False
    assert isinstance(OSError(), ssl_classes("SSLError")) is False


def test_loaded_ssl_classes_are_the_real_ones() -> None:
    import ssl

    assert ssl_classes("SSLSocket") == (ssl.SSLSocket,)
    assert ssl_classes("SSLWantReadError", "SSLWantWriteError") == (ssl.SSLWantReadError, ssl.SSLWantWriteError)
    with socket.socket() as plain, _Wrapped() as other:
        assert is_tls(plain) is False and is_tls(other) is False
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with context.wrap_socket(socket.socket(), do_handshake_on_connect=False, server_hostname="x") as tls:
        assert is_tls(tls) is True


def test_not_imported_ssl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ssl", raising=False)
    assert ssl_classes("SSLSocket") == ()
