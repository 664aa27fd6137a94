"""The per-object shortcuts of issue 13 keep the wire and the deadlines exact:

- a message that fits one PDU is built directly, byte for byte what the general fragmenter builds;
- the socket driver keeps a socket timeout that is close enough to the wait (no settimeout per read),
  and when the kept timeout is a little shorter than the wait it waits out the rest instead of failing.
"""

from __future__ import annotations

import socket

import pytest

from dcmnet_cli.dimse import fragment
from dcmnet_cli.dimse.connection import DIMSEConnection, Role
from dcmnet_cli.transport import channel as channel_module
from dcmnet_cli.transport.channel import Channel, LinkTimeout

from helpers.socket_checks import kept_shorter_timeout_waits_out_the_rest


def _general(context_id: int, command: bytes, dataset, cap: int) -> list[bytes]:
    """The general path: a data set given as a generator never takes the single-PDU shortcut."""
    data = None if dataset is None else (piece for piece in (dataset,))
    return [b"".join(bytes(p) for p in pdu) for pdu in fragment.fragment_message(context_id, command, data, cap)]


def _fast(context_id: int, command: bytes, dataset, cap: int) -> list[bytes]:
    return [b"".join(bytes(p) for p in pdu) for pdu in fragment.fragment_message(context_id, command, dataset, cap)]


@pytest.mark.parametrize("size", [0, 1, 2, 100, 9000, *range(16177, 16189), 40000])  # 16384 - 198 - 6 = 16180
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_single_pdu_messages_are_the_general_paths_bytes(size: int, kind) -> None:
    command = bytes(range(96)) * 2
    dataset = kind(bytes((i * 7) & 0xFF for i in range(size)))
    for cap in (16384, 16385, 131056):
        assert _fast(3, command, dataset, cap) == _general(3, command, bytes(dataset), cap), (size, cap)
    assert _fast(1, command, None, 16384) == [b"".join(bytes(p) for p in next(fragment.fragment_message(1, command, None, 16384)))]


def test_command_alone_larger_than_a_pdu_still_fragments() -> None:
    command = bytes(300)
    pdus = _fast(1, command, None, 100)
    assert len(pdus) > 1 and all(len(p) <= 100 + 6 for p in pdus)


class _CountingSocket(socket.socket):
    calls: list

    def settimeout(self, value) -> None:  # type: ignore[override]
        self.calls.append(value)
        super().settimeout(value)


@pytest.fixture
def channel_pair():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = _CountingSocket(socket.AF_INET, socket.SOCK_STREAM)
        client.calls = []
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    chan = Channel(client, DIMSEConnection(Role.REQUESTOR))
    try:
        yield chan, server, client.calls
    finally:
        chan.close()
        server.close()


def test_steady_reads_and_writes_do_not_reset_the_socket_timeout(channel_pair) -> None:
    chan, server, calls = channel_pair
    chan.network_timeout = 60.0
    for wait in (59.99, 59.98, 59.95):  # every deadline's remaining wait is a new float
        server.sendall(b"x")
        assert chan._read(wait) == 1
        chan._send([b"y"])
    assert calls == [59.99]  # set once; 59.98, 59.95 and the writes' 60.0 are within 2 %
    server.recv(10)


def test_a_kept_shorter_timeout_waits_out_the_rest(channel_pair, monkeypatch) -> None:
    chan, server, calls = channel_pair
    kept_shorter_timeout_waits_out_the_rest(chan, server, monkeypatch, channel_module)  # the socket's timeout 0.2
    assert calls[0] == 0.2 and 5.0 not in calls


def test_a_due_deadline_is_still_non_blocking(channel_pair) -> None:
    chan, server, calls = channel_pair
    server.sendall(b"x")
    assert chan._read(5.0) == 1
    with pytest.raises(LinkTimeout):
        chan._read(0.0)
    assert calls[-1] == 0.0
