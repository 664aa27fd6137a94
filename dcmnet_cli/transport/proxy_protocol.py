"""PROXY protocol version 2 (HAProxy's ``send-proxy-v2``), read before the A-ASSOCIATE-RQ: sans-IO.

``listen --proxy-protocol`` expects every connection to start with the binary v2 header a load balancer
sends (https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt, section 2.2): a 12-byte signature,
version/command, family/transport, a 16-bit length, then the addresses and optional TLVs. Only version 2
is accepted: the text header of version 1 is refused like any other garbage (HAProxy: use
``send-proxy-v2``, not ``send-proxy``).

:class:`ProxyHeaderReader` is fed bytes and says how many more it needs (:attr:`~ProxyHeaderReader.wanted`),
so a caller can read exactly the header and not one byte beyond it (what follows may be a TLS ClientHello
that must reach the TLS layer untouched). It never waits: a caller bounds the whole read (``listen``
bounds it by ``--artim-timeout``, like the rest of the association request).

- ``PROXY`` over TCP/IPv4 or TCP/IPv6: the source address and port replace the socket's peer.
- ``PROXY`` over a UNIX socket: the source path (``unix:PATH``; ``unix:`` when unnamed).
- ``PROXY`` with family UNSPEC, and every ``LOCAL`` command (the balancer's own health checks): no
  address is given; the socket's own peer stays.
- TLVs (after the addresses) are skipped, never interpreted.
- Refused (:class:`ProxyHeaderError`, one-line reason): a wrong signature, a version other than 2, an
  unknown command, family or transport, an address block shorter than its family needs, a header longer
  than :data:`MAX_HEADER` bytes.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
FIXED = 16
"""Signature (12), version/command (1), family/transport (1), length (2)."""
MAX_HEADER = 4096
"""Largest header accepted, fixed part included (addresses take at most 216 bytes; the rest is TLVs)."""
LOCAL, PROXY = 0x0, 0x1
AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX = 0x0, 0x1, 0x2, 0x3
UNSPEC, STREAM, DGRAM = 0x0, 0x1, 0x2
ADDRESS_SIZES = {AF_UNSPEC: 0, AF_INET: 12, AF_INET6: 36, AF_UNIX: 216}
FAMILY_NAMES = {AF_UNSPEC: "unspec", AF_INET: "inet", AF_INET6: "inet6", AF_UNIX: "unix"}


class ProxyHeaderError(ValueError):
    """Not a valid PROXY protocol v2 header: the connection must be refused."""


class ProxyHeader(NamedTuple):
    command: str
    """"LOCAL" (the balancer's own connection, e.g. a health check) or "PROXY" (a relayed client)."""
    family: str
    """"inet", "inet6", "unix" or "unspec"."""
    source: str | None
    """The client's address as ``host:port`` (``unix:PATH`` for UNIX); None for LOCAL and UNSPEC."""
    destination: str | None
    """The address the client connected to (the balancer's frontend), same format; None likewise."""
    length: int
    """Bytes the whole header took (fixed part, addresses and TLVs)."""


class ProxyHeaderReader:
    """Accumulates one v2 header: feed it bytes until :attr:`header` is set (or it raises)."""

    def __init__(self, max_header: int = MAX_HEADER) -> None:
        self.max_header = max_header
        self.data = bytearray()
        self.total: int | None = None
        """The whole header's length once the fixed part is in."""
        self.header: ProxyHeader | None = None

    @property
    def wanted(self) -> int:
        """Bytes still needed (0 once the header is whole): read at most this many, never more."""
        if self.header is not None:
            return 0
        return (self.total if self.total is not None else FIXED) - len(self.data)

    def feed(self, chunk: bytes) -> ProxyHeader | None:
        """Take ``chunk`` (at most :attr:`wanted` bytes); the header once whole, else None."""
        if len(chunk) > self.wanted:
            raise ValueError("fed more bytes than the header needs")
        self.data += chunk
        if self.total is None:
            _check_prefix(bytes(self.data))
            if len(self.data) < FIXED:
                return None
            self.total = FIXED + _fixed_length(bytes(self.data), self.max_header)
        if len(self.data) < self.total:
            return None
        self.header = parse(bytes(self.data))
        return self.header


def _check_prefix(data: bytes) -> None:
    """Refuse as soon as the bytes so far cannot start a v2 header (garbage is refused without waiting)."""
    part = data[:len(SIGNATURE)]
    if SIGNATURE[:len(part)] != part:
        if data.startswith(b"PROXY "[:len(data)]):
            raise ProxyHeaderError("a PROXY protocol v1 (text) header: only v2 is accepted (send-proxy-v2)")
        raise ProxyHeaderError("no PROXY protocol v2 signature")


def _fixed_length(data: bytes, max_header: int) -> int:
    version, command = data[12] >> 4, data[12] & 0x0F
    if version != 2:
        raise ProxyHeaderError(f"PROXY protocol version {version}, not 2")
    if command not in (LOCAL, PROXY):
        raise ProxyHeaderError(f"unknown PROXY protocol command 0x{command:X}")
    family, transport = data[13] >> 4, data[13] & 0x0F
    if family not in ADDRESS_SIZES:
        raise ProxyHeaderError(f"unknown PROXY protocol address family 0x{family:X}")
    if transport not in (UNSPEC, STREAM, DGRAM):
        raise ProxyHeaderError(f"unknown PROXY protocol transport 0x{transport:X}")
    (length,) = struct.unpack_from("!H", data, 14)
    if FIXED + length > max_header:
        raise ProxyHeaderError(f"PROXY protocol header of {FIXED + length} bytes (at most {max_header})")
    if command == PROXY and length < ADDRESS_SIZES[family]:
        raise ProxyHeaderError(f"PROXY protocol {FAMILY_NAMES[family]} addresses truncated "
                               f"({length} of {ADDRESS_SIZES[family]} bytes)")
    return length


def parse(data: bytes) -> ProxyHeader:
    """One whole v2 header (exactly its bytes, TLVs included): what it says, or ProxyHeaderError."""
    if len(data) < FIXED:
        raise ProxyHeaderError(f"PROXY protocol header truncated ({len(data)} of {FIXED} bytes)")
    _check_prefix(data)
    length = _fixed_length(data, max(len(data), MAX_HEADER))
    if len(data) != FIXED + length:
        raise ProxyHeaderError(f"PROXY protocol header of {len(data)} bytes, its length field says {FIXED + length}")
    command, family, transport = data[12] & 0x0F, data[13] >> 4, data[13] & 0x0F
    name = "LOCAL" if command == LOCAL else "PROXY"
    if command == LOCAL or family == AF_UNSPEC:  # no address to believe: the socket's peer stays
        return ProxyHeader(name, FAMILY_NAMES[family], None, None, len(data))
    if transport == DGRAM:
        raise ProxyHeaderError("PROXY protocol header for a datagram connection")
    body = data[FIXED:]
    source, destination = _addresses(family, body)
    return ProxyHeader(name, FAMILY_NAMES[family], source, destination, len(data))


def _addresses(family: int, body: bytes) -> tuple[str, str]:
    if family == AF_INET:
        src, dst, sport, dport = struct.unpack_from("!4s4sHH", body)
        return (f"{ipaddress.IPv4Address(src)}:{sport}", f"{ipaddress.IPv4Address(dst)}:{dport}")
    if family == AF_INET6:
        src, dst, sport, dport = struct.unpack_from("!16s16sHH", body)
        return (f"{_ipv6(src)}:{sport}", f"{_ipv6(dst)}:{dport}")
    return f"unix:{_unix_path(body[:108])}", f"unix:{_unix_path(body[108:216])}"


def _ipv6(raw: bytes) -> str:
    address = ipaddress.IPv6Address(raw)
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else str(address)


def _unix_path(raw: bytes) -> str:
    path = raw.split(b"\0", 1)[0]
    return path.decode("utf-8", "backslashreplace")


def encode(command: str = "PROXY", source: tuple[str, int] | str | None = None,
           destination: tuple[str, int] | str | None = None, tlvs: bytes = b"") -> bytes:
    """A v2 header (for tests and the health-check snippet): ``source``/``destination`` as (host, port)
    for TCP over IPv4/IPv6 or a path for UNIX; both None for UNSPEC. ``tlvs`` appended as given."""
    cmd = LOCAL if command == "LOCAL" else PROXY
    if source is None or destination is None:
        family, transport, body = AF_UNSPEC, UNSPEC, b""
    elif isinstance(source, str) and isinstance(destination, str):
        family, transport = AF_UNIX, STREAM
        body = source.encode().ljust(108, b"\0") + destination.encode().ljust(108, b"\0")
    else:
        assert isinstance(source, tuple) and isinstance(destination, tuple)
        src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
        family, transport = (AF_INET, STREAM) if src.version == 4 else (AF_INET6, STREAM)
        body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    body += tlvs
    return SIGNATURE + bytes([0x20 | cmd, family << 4 | transport]) + struct.pack("!H", len(body)) + body


__all__ = ["MAX_HEADER", "ProxyHeader", "ProxyHeaderError", "ProxyHeaderReader", "SIGNATURE", "encode", "parse"]
