"""Plain TCP sockets from ``_socket``, the C module that :mod:`socket` wraps (issue 13: start-up).

``import socket`` costs ~2.4 ms of every ``dcmnet`` run here (it loads ``selectors``, ``array`` and turns
every constant into an enum) for a Python subclass whose extras a client link never uses: the reads,
writes, options and timeouts are all ``_socket.socket``'s. So the clients (echo, store, find, move, get)
connect with :func:`connect` and their links are ``_socket.socket`` objects; ``listen`` still accepts
``socket.socket`` ones, and TLS wraps either (``ssl.SSLSocket`` subclasses ``socket.socket``). Both kinds
of plain socket are told apart from a TLS one by :func:`is_plain`.
"""

from __future__ import annotations

import sys

import _socket
from _socket import (
    AF_INET,
    AF_INET6,
    IPPROTO_TCP,
    SHUT_RDWR,
    SO_RCVTIMEO,
    SO_SNDTIMEO,
    SOCK_STREAM,
    SOL_SOCKET,
    TCP_NODELAY,
    gaierror,
)

Socket = _socket.socket
"""The base of ``socket.socket`` (and so of ``ssl.SSLSocket``): what annotations and unbound calls name."""

AF_UNIX: int | None = getattr(_socket, "AF_UNIX", None)
MSG_DONTWAIT: int = getattr(_socket, "MSG_DONTWAIT", 0x40)
MSG_MORE: int = getattr(_socket, "MSG_MORE", 0)
TCP_QUICKACK: int = getattr(_socket, "TCP_QUICKACK", 0)
"""Linux's TCP_QUICKACK; 0 where the platform has none."""

__all__ = ["AF_INET", "AF_INET6", "AF_UNIX", "IPPROTO_TCP", "MSG_DONTWAIT", "MSG_MORE", "SHUT_RDWR", "SOCK_STREAM",
           "SOL_SOCKET", "SO_RCVTIMEO", "SO_SNDTIMEO", "Socket", "TCP_NODELAY", "TCP_QUICKACK", "connect",
           "gaierror", "is_plain", "same_host"]


def is_plain(sock: object) -> bool:
    """A plain socket (``_socket.socket`` or ``socket.socket`` itself), not a TLS wrapper nor any other
    subclass: what may be kept blocking with kernel deadlines, polled, and written with ``sendfile``."""
    kind = type(sock)
    if kind is Socket:
        return True
    module = sys.modules.get("socket")  # loaded whenever a socket.socket can exist
    return module is not None and kind is module.socket


def same_host(sock: Socket) -> bool:
    """Whether both ends of a connected socket are on this machine: a Unix socket, a peer at the socket's
    own address (::1 included), or anywhere in 127.0.0.0/8 (mapped into IPv6 or not). False when the
    addresses cannot be read."""
    try:
        if sock.family not in (AF_INET, AF_INET6):
            return sock.family == AF_UNIX
        peer, local = sock.getpeername()[0], sock.getsockname()[0]
    except OSError:
        return False
    if peer.startswith("::ffff:"):
        peer = peer[7:]
    return peer.startswith("127.") or peer == local or local == f"::ffff:{peer}"


def connect(host: str | bytes, port: int, timeout: float | None) -> Socket:
    """``socket.create_connection(address, timeout)`` without the ``socket`` module: each address
    ``getaddrinfo`` gives, in its order, until one connects; else the first address's error (as
    ``create_connection`` raises). ``gaierror`` when the name does not resolve."""
    errors: list[OSError] = []
    for family, kind, proto, _name, address in _socket.getaddrinfo(host, port, 0, SOCK_STREAM):
        sock = Socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as error:
            errors.append(error)
            sock.close()
    if errors:
        raise errors[0]
    raise OSError("getaddrinfo returned no address")
