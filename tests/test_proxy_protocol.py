"""PROXY protocol v2 (``listen --proxy-protocol``, issue 14): the sans-IO parser field by field, and the
accept loop that reads the header before the A-ASSOCIATE-RQ (peer replaced, bad headers refused, bounded)."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from dcmnet_cli.transport.proxy_protocol import (
    MAX_HEADER,
    SIGNATURE,
    ProxyHeaderError,
    ProxyHeaderReader,
    encode,
    parse,
)
from helpers.procs import LOOPBACK
from helpers.rawdicom import make_rq, read_pdu, release, wait_closed
from dcmnet_cli.ul.pdu import AssociateAC, AssociateRJ

TLV = bytes([0x05, 0x00, 0x04]) + b"uniq" + bytes([0x01, 0x00, 0x02]) + b"h2"  # UNIQUE_ID, ALPN


def feed_all(data: bytes, step: int = 1):
    """Feed a reader exactly as a caller would (never more than ``wanted``), ``step`` bytes at a time."""
    reader = ProxyHeaderReader()
    pos = 0
    while reader.header is None:
        size = min(step, reader.wanted)
        reader.feed(data[pos:pos + size])
        pos += size
    return reader.header, pos


# ------------------------------------------------------------------ the parser, field by field

def test_ipv4_source_and_destination():
    header = parse(encode("PROXY", ("203.0.113.7", 4242), ("192.0.2.1", 104)))
    assert header.command == "PROXY" and header.family == "inet"
    assert header.source == "203.0.113.7:4242" and header.destination == "192.0.2.1:104"
    assert header.length == 16 + 12


def test_ipv6_and_ipv4_mapped():
    header = parse(encode("PROXY", ("2001:db8::7", 65535), ("2001:db8::1", 11112)))
    assert header.family == "inet6" and header.source == "2001:db8::7:65535"
    assert header.destination == "2001:db8::1:11112"
    mapped = parse(encode("PROXY", ("::ffff:198.51.100.9", 1), ("::1", 2)))
    assert mapped.source == "198.51.100.9:1"


def test_unix_paths():
    header = parse(encode("PROXY", "/run/modality.sock", "/run/dcmnet.sock"))
    assert header.family == "unix" and header.source == "unix:/run/modality.sock"
    assert header.destination == "unix:/run/dcmnet.sock"
    assert parse(encode("PROXY", "", "")).source == "unix:"


def test_local_command_keeps_the_socket_peer():
    header = parse(encode("LOCAL"))
    assert header.command == "LOCAL" and header.source is None and header.length == 16
    # LOCAL with addresses (HAProxy's own checks may carry them): ignored
    raw = bytearray(encode("PROXY", ("203.0.113.7", 1), ("192.0.2.1", 2)))
    raw[12] = 0x20
    assert parse(bytes(raw)).source is None


def test_unspec_family_keeps_the_socket_peer():
    header = parse(encode("PROXY"))
    assert header.family == "unspec" and header.source is None


def test_tlvs_are_skipped_and_counted_in_the_length():
    plain = encode("PROXY", ("203.0.113.7", 4242), ("192.0.2.1", 104))
    header = parse(encode("PROXY", ("203.0.113.7", 4242), ("192.0.2.1", 104), TLV))
    assert header.source == "203.0.113.7:4242" and header.length == len(plain) + len(TLV)


@pytest.mark.parametrize("step", [1, 3, 16, 1000])
def test_reader_reads_exactly_the_header_never_beyond(step):
    data = encode("PROXY", ("203.0.113.7", 4242), ("192.0.2.1", 104), TLV)
    header, used = feed_all(data + b"\x16\x03\x01TLS-CLIENT-HELLO", step)
    assert used == len(data) and header.source == "203.0.113.7:4242"
    reader = ProxyHeaderReader()
    with pytest.raises(ValueError):
        reader.feed(data + b"x")  # more than wanted: a caller bug, never silently swallowed


def test_garbage_is_refused_at_the_first_wrong_byte():
    reader = ProxyHeaderReader()
    with pytest.raises(ProxyHeaderError, match="signature"):
        reader.feed(b"\x01")  # an A-ASSOCIATE-RQ without the header
    with pytest.raises(ProxyHeaderError, match="v1"):
        ProxyHeaderReader().feed(b"PROXY TCP4 ")
    with pytest.raises(ProxyHeaderError, match="signature"):
        ProxyHeaderReader().feed(SIGNATURE[:5] + b"X")


@pytest.mark.parametrize("byte12,byte13,match", [
    (0x11, 0x11, "version 1"),
    (0x32, 0x11, "version 3"),
    (0x22, 0x11, "command 0x2"),
    (0x21, 0x41, "family 0x4"),
    (0x21, 0x13, "transport 0x3"),
])
def test_bad_version_command_family_transport(byte12, byte13, match):
    raw = bytearray(encode("PROXY", ("203.0.113.7", 1), ("192.0.2.1", 2)))
    raw[12], raw[13] = byte12, byte13
    with pytest.raises(ProxyHeaderError, match=match):
        parse(bytes(raw))
    with pytest.raises(ProxyHeaderError, match=match):
        ProxyHeaderReader().feed(bytes(raw[:16]))  # refused from the fixed part, without waiting for more


def test_datagram_refused():
    raw = bytearray(encode("PROXY", ("203.0.113.7", 1), ("192.0.2.1", 2)))
    raw[13] = 0x12
    with pytest.raises(ProxyHeaderError, match="datagram"):
        parse(bytes(raw))


@pytest.mark.parametrize("family,short", [(0x11, 11), (0x21, 35), (0x31, 215)])
def test_address_block_shorter_than_its_family(family, short):
    raw = SIGNATURE + bytes([0x21, family]) + struct.pack("!H", short) + b"\0" * short
    with pytest.raises(ProxyHeaderError, match="truncated"):
        parse(raw)


def test_truncated_and_inconsistent_lengths():
    data = encode("PROXY", ("203.0.113.7", 1), ("192.0.2.1", 2))
    with pytest.raises(ProxyHeaderError, match="truncated"):
        parse(data[:10])
    with pytest.raises(ProxyHeaderError, match="length field"):
        parse(data[:-1])
    with pytest.raises(ProxyHeaderError, match="length field"):
        parse(data + b"\0")
    reader = ProxyHeaderReader()
    assert reader.feed(data[:16]) is None and reader.wanted == 12
    assert reader.feed(data[16:-1]) is None and reader.wanted == 1  # waits (the caller's ARTIM bounds it)


def test_oversized_header_refused_from_its_length_field():
    raw = SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", MAX_HEADER)
    with pytest.raises(ProxyHeaderError, match="at most"):
        ProxyHeaderReader().feed(raw)
    fits = SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", MAX_HEADER - 16)
    assert ProxyHeaderReader().feed(fits) is None


# ------------------------------------------------------------------ the accept loop

@pytest.fixture
def proxied_server():
    """An in-process listener with --proxy-protocol (Verification), its events; always stopped."""
    from dcmnet_cli.services.scp.entity import ListenerSettings, build_listener

    events: list = []
    server = build_listener(ListenerSettings("PROXIED", LOOPBACK, 0, artim_timeout=1.0), on_event=events.append)
    server.proxy_protocol = True
    port = server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port, events, server
    finally:
        server.stop(1.0)
        thread.join(5.0)
        assert not thread.is_alive()


def _connect(port: int) -> socket.socket:
    return socket.create_connection((LOOPBACK, port), timeout=3.0)


def _wait_for(events: list, kind: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in events if e.event == kind]
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError(f"no {kind} event in {events}")


def test_source_address_replaces_the_socket_peer(proxied_server):
    port, events, _server = proxied_server
    sock = _connect(port)
    header = encode("PROXY", ("203.0.113.7", 4242), ("192.0.2.1", 104), TLV)
    sock.sendall(header + make_rq(calling="MODALITY").encode())  # header and RQ in one segment
    assert isinstance(read_pdu(sock, 3.0), AssociateAC)
    release(sock)
    ended = _wait_for(events, "association")
    associated = [e for e in events if e.event == "associated"]
    assert associated[0].peer == "203.0.113.7:4242" and ended[0].peer == "203.0.113.7:4242"


def test_rejection_names_the_proxied_peer(proxied_server):
    port, events, server = proxied_server
    sock = _connect(port)
    sock.sendall(encode("PROXY", ("2001:db8::7", 7), ("2001:db8::1", 104)))
    time.sleep(0.05)  # the header and the RQ in two segments
    sock.sendall(make_rq(application_context="1.2.3.4").encode())
    assert isinstance(read_pdu(sock, 3.0), AssociateRJ)
    sock.close()
    assert _wait_for(events, "rejected")[0].peer == "2001:db8::7:7"


def test_local_command_keeps_the_real_peer(proxied_server):
    port, events, _server = proxied_server
    sock = _connect(port)
    sock.sendall(encode("LOCAL") + make_rq().encode())
    assert isinstance(read_pdu(sock, 3.0), AssociateAC)
    release(sock)
    assert _wait_for(events, "associated")[0].peer.startswith(f"{LOOPBACK}:")


def test_connection_without_the_header_is_refused_and_logged(proxied_server):
    port, events, server = proxied_server
    sock = _connect(port)
    sock.sendall(make_rq().encode())
    waited, pdus = wait_closed(sock, 3.0)
    assert pdus == [] and waited < 1.0  # closed at once: no A-ASSOCIATE-AC, no thread
    dropped = _wait_for(events, "dropped")
    assert "PROXY protocol v2" in dropped[0].detail and server.stats.associations == 0
    assert server.stats.dropped == 1


def test_truncated_header_then_silence_is_closed_by_artim(proxied_server):
    port, events, server = proxied_server
    sock = _connect(port)
    sock.sendall(encode("PROXY", ("203.0.113.7", 1), ("192.0.2.1", 2))[:20])
    waited, pdus = wait_closed(sock, 4.0)
    assert pdus == [] and 0.5 < waited < 3.0  # --artim-timeout 1 s bounds the header too
    assert "PROXY protocol v2 header within the ARTIM" in _wait_for(events, "dropped", 4.0)[0].detail


def test_oversized_header_closed_at_once(proxied_server):
    port, events, server = proxied_server
    sock = _connect(port)
    sock.sendall(SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 0xFFFF))
    waited, pdus = wait_closed(sock, 3.0)
    assert pdus == [] and waited < 1.0
    assert "at most" in _wait_for(events, "dropped")[0].detail


def test_header_before_the_tls_handshake(tmp_path):
    """HAProxy passing TLS through sends the header in clear, then the ClientHello: read exactly the
    header, then the handshake, then the RQ; the peer is the header's source."""
    import ssl
    import subprocess

    from dcmnet_cli.services.scp.entity import ListenerSettings, build_listener

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True, timeout=30)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    events: list = []
    server = build_listener(ListenerSettings("PROXIED", LOOPBACK, 0, artim_timeout=2.0, tls=context),
                            on_event=events.append)
    server.proxy_protocol = True
    port = server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
        raw = _connect(port)
        raw.sendall(encode("PROXY", ("198.51.100.20", 5555), ("192.0.2.1", 2762)))
        with client.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(make_rq().encode())
            assert isinstance(read_pdu(tls, 3.0), AssociateAC)
        tls_event = _wait_for(events, "tls")
        assert tls_event[0].peer == "198.51.100.20:5555"
        assert _wait_for(events, "associated")[0].peer == "198.51.100.20:5555"
    finally:
        server.stop(1.0)
        thread.join(5.0)
