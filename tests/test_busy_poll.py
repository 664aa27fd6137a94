"""Busy-polling before a blocking read (transport/busy_poll.py, issue 13).

A read polls first only when it can pay: this link's previous wait was within the budget, the process has
one link open, the machine has two CPUs or more, and the budget is not 0. Whatever it does, the caller
gets the same bytes, and a peer slower than the budget is still waited for by the ordinary read.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from dcmnet_cli.cli.main import main
from dcmnet_cli.dimse.connection import DIMSEConnection, Role
from dcmnet_cli.transport.busy_poll import DEFAULT_BUDGET, LINKS, BusyPoll, Links, budget_from
from dcmnet_cli.transport.channel import Channel

from helpers.socket_checks import connected_pair

DONTWAIT = socket.MSG_DONTWAIT


class FakeSocket:
    """``recv_into`` from a script: each non-blocking call takes the next entry (None: nothing yet); a
    blocking call returns ``blocking``. Every call's flags are recorded."""

    def __init__(self, polled: list[bytes | None], blocking: bytes = b"late", clock: "FakeClock | None" = None,
                 blocking_takes: float = 0.0) -> None:
        self.polled, self.blocking, self.clock, self.blocking_takes = list(polled), blocking, clock, blocking_takes
        self.flags: list[int] = []

    def recv_into(self, into: memoryview, nbytes: int = 0, flags: int = 0) -> int:
        self.flags.append(flags)
        if flags & DONTWAIT:
            assert len(self.flags) < 1000, "polled without end"
            data = self.polled.pop(0) if self.polled else None
            if data is None:
                raise BlockingIOError
        else:
            data = self.blocking
            if self.clock is not None:
                self.clock.now += self.blocking_takes
        into[:len(data)] = data
        return len(data)


class FakeClock:
    """Each reading moves time on by ``step`` seconds."""

    def __init__(self, step: float, now: float = 1000.0) -> None:
        self.now, self.step = now, step  # far from 0: a wait is a difference of two readings, never one

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def one_link() -> Links:
    links = Links()
    links.opened()
    return links


def poller(budget: float = 200e-6, step: float = 10e-6, links: Links | None = None) -> tuple[BusyPoll, FakeClock]:
    clock = FakeClock(step)
    return BusyPoll(budget, links or one_link(), clock), clock


def test_the_first_read_sleeps_and_a_quick_one_makes_the_next_poll() -> None:
    poll, _clock = poller()
    buf = memoryview(bytearray(16))
    sock = FakeSocket([b"ab"], blocking=b"first")
    assert poll.read(sock, buf, 30.0) == 5 and bytes(buf[:5]) == b"first"
    assert sock.flags == [0]  # nothing known of the peer's pace yet: no polling
    assert poll.last_wait <= poll.budget
    assert poll.read(sock, buf, 30.0) == 2 and bytes(buf[:2]) == b"ab"
    assert sock.flags == [0, DONTWAIT]  # polled, found the bytes, never slept


def test_polling_gives_up_after_its_budget_then_sleeps_for_the_bytes() -> None:
    poll, clock = poller(budget=100e-6, step=10e-6)
    poll.last_wait = 50e-6
    sock = FakeSocket([None] * 100, blocking=b"slow", clock=clock, blocking_takes=0.5)
    buf = memoryview(bytearray(16))
    assert poll.read(sock, buf, 30.0) == 4 and bytes(buf[:4]) == b"slow"
    polls = sock.flags.count(DONTWAIT)
    assert 3 <= polls <= 12 and sock.flags[-1] == 0  # ~budget/step polls, then one blocking read
    assert poll.last_wait > poll.budget  # a slow peer: the next read sleeps at once
    sock.flags.clear()
    poll.read(sock, buf, 30.0)
    assert sock.flags == [0]


def test_a_quick_answer_turns_polling_back_on() -> None:
    poll, _clock = poller()
    poll.last_wait = 1.0  # the peer was slow
    sock = FakeSocket([b"x"], blocking=b"quick")
    poll.read(sock, memoryview(bytearray(16)), 30.0)  # slept, but the bytes came at once
    assert sock.flags == [0]
    assert poll.polls(30.0)


@pytest.mark.parametrize("case", ["two links", "budget 0", "wait within the budget"])
def test_no_polling_where_it_cannot_pay(case: str) -> None:
    links = one_link()
    budget, wait = 200e-6, 30.0
    if case == "two links":  # store -j 2, listen serving two senders: the GIL and the CPUs are the work's
        links.opened()
    elif case == "budget 0":
        budget = 0.0
    else:
        wait = 100e-6
    poll, _clock = poller(budget=budget, links=links)
    poll.last_wait = 0.0
    sock = FakeSocket([b"x"], blocking=b"slept")
    assert poll.read(sock, memoryview(bytearray(16)), wait) == 5
    assert sock.flags == [0]


def test_a_deadline_of_none_polls_too() -> None:
    poll, _clock = poller()
    poll.last_wait = 0.0
    assert poll.polls(None)


def test_the_budget_from_the_environment() -> None:
    assert budget_from({}, 2) == DEFAULT_BUDGET == 500e-6
    assert budget_from({"DCMNET_BUSY_POLL": "50"}, 8) == pytest.approx(50e-6)
    assert budget_from({"DCMNET_BUSY_POLL": " 0 "}, 8) == 0.0
    assert budget_from({}, 1) == 0.0  # one CPU: the peer could not run while this side polls
    assert budget_from({"DCMNET_BUSY_POLL": "1000000"}, 2) == 1.0
    for bad in ("abc", "-5", "1.5", "1e3", "\u00b2", "\u0663", "1000001"):  # ², Arabic-Indic 3: digits, not ASCII
        with pytest.raises(ValueError, match="DCMNET_BUSY_POLL.*whole microseconds from 0 \\(off\\) to 1000000"):
            budget_from({"DCMNET_BUSY_POLL": bad}, 2)


def test_a_bad_budget_is_a_usage_error_before_anything_runs(monkeypatch, capsys) -> None:
    monkeypatch.setenv("DCMNET_BUSY_POLL", "fast")
    with pytest.raises(SystemExit) as done:
        main(["echo", "127.0.0.1", "1"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dcmnet: error: DCMNET_BUSY_POLL='fast': expected whole microseconds from 0 (off) to 1000000"]


# ---------------------------------------------------------------------------- real sockets


@pytest.fixture
def tcp_pair():
    with connected_pair() as pair:
        yield pair


def _read_sent_later(poll: BusyPoll, client: socket.socket, server: socket.socket, data: bytes,
                     delay: float) -> bytes:
    """What ``poll.read`` returns while another thread sends ``data`` on ``server`` after ``delay`` s."""
    thread = threading.Thread(target=lambda: (time.sleep(delay), server.sendall(data)))
    thread.start()
    buf = memoryview(bytearray(64))
    try:
        return bytes(buf[:poll.read(client, buf, 30.0)])
    finally:
        thread.join()


def test_polling_receives_what_arrives_while_it_polls(tcp_pair, monkeypatch) -> None:
    """The socket's own timeout (10 ms) would have given up before the peer's bytes (50 ms): only the
    polling loop can have read them. (Preemption is not the question here: a loaded machine may take the
    CPU from the loop for a moment.)"""
    from dcmnet_cli.transport import busy_poll

    monkeypatch.setattr(busy_poll, "PREEMPTED", 10.0)
    client, server = tcp_pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("@ll", 0, 10_000))
    poll = BusyPoll(5.0, one_link())
    poll.last_wait = 0.0
    assert _read_sent_later(poll, client, server, b"polled", 0.05) == b"polled"


def test_a_peer_slower_than_the_budget_is_waited_for_by_the_blocking_read(tcp_pair) -> None:
    client, server = tcp_pair
    poll = BusyPoll(0.001, one_link())
    poll.last_wait = 0.0
    assert _read_sent_later(poll, client, server, b"later", 0.2) == b"later"
    assert not poll.polls(30.0)  # waited ~0.2 s: the next read sleeps at once


def test_a_channel_counts_as_an_open_link_until_closed(tcp_pair) -> None:
    client, _server = tcp_pair
    before = LINKS.open
    chan = Channel(client, DIMSEConnection(Role.REQUESTOR))
    assert LINKS.open == before + 1
    chan.close()
    chan.close()  # closed once, counted once
    assert LINKS.open == before


def test_a_polled_read_records_how_long_it_waited() -> None:
    poll, _clock = poller(budget=200e-6, step=10e-6)
    poll.last_wait = 0.0
    sock = FakeSocket([None, None, None, b"x"])
    poll.read(sock, memoryview(bytearray(16)), 30.0)
    assert sock.flags == [DONTWAIT] * 4
    assert 30e-6 <= poll.last_wait <= 200e-6  # the bytes came after three empty polls


def test_a_channel_reads_through_its_busy_poll(tcp_pair) -> None:
    client, server = tcp_pair
    chan = Channel(client, DIMSEConnection(Role.REQUESTOR))
    try:
        assert chan._poll.last_wait == float("inf")
        server.sendall(b"abc")
        assert chan._read(30.0) == 3 and bytes(chan._buf[:3]) == b"abc"
        assert chan._poll.last_wait < 30.0  # its wait was measured: the next quick read may poll
    finally:
        chan.close()


def test_no_polling_beside_sibling_worker_processes() -> None:
    links = one_link()
    links.siblings = True
    poll, _clock = poller(links=links)
    poll.last_wait = 0.0
    assert not poll.polls(30.0)


def test_listen_workers_mark_their_links_before_the_first_fork(monkeypatch) -> None:
    """run_workers(N > 1) sets the mark in the parent before forking, so every worker inherits it."""
    from dcmnet_cli.transport import workers

    class Server:
        def serve_forever(self) -> None:
            raise AssertionError("not reached: the fork failed first")

    def no_fork() -> int:
        assert LINKS.siblings, "forked before marking the links"
        raise OSError("no fork in this test")

    monkeypatch.setattr(LINKS, "siblings", False)
    monkeypatch.setattr(workers.os, "fork", no_fork)
    workers.run_workers(1, lambda index: Server(), lambda server, index: None, 0.1, first=Server(),
                        serve=lambda server: None)
    assert not LINKS.siblings  # one process: nothing shared
    with pytest.raises(OSError, match="no fork"):
        workers.run_workers(2, lambda index: Server(), lambda server, index: None, 0.1, first=Server())
    assert LINKS.siblings


def test_a_preempted_poll_makes_the_next_reads_sleep() -> None:
    """A gap between two polls longer than PREEMPTED: other work wanted the CPU; QUIET_READS reads sleep
    at once, then polling may resume."""
    from dcmnet_cli.transport.busy_poll import PREEMPTED, QUIET_READS

    poll, clock = poller(budget=1.0, step=10e-6)
    poll.last_wait = 0.0

    class Preempting(FakeSocket):
        def recv_into(self, into, nbytes=0, flags=0):
            if flags & DONTWAIT and len(self.flags) == 2:
                clock.now += PREEMPTED * 2  # descheduled between the second and third poll
            return super().recv_into(into, nbytes, flags)

    sock = Preempting([None] * 50, blocking=b"slept")
    assert poll.read(sock, memoryview(bytearray(16)), 30.0) == 5
    assert sock.flags == [DONTWAIT] * 3 + [0]  # stopped polling at the gap, slept for the bytes
    for _ in range(QUIET_READS):
        assert not poll.polls(30.0)
        sock.flags.clear()
        poll.last_wait = 0.0
        poll.read(sock, memoryview(bytearray(16)), 30.0)
        assert sock.flags == [0]
    poll.last_wait = 0.0
    assert poll.polls(30.0)


def test_a_long_poll_without_a_gap_is_not_taken_for_preemption() -> None:
    from dcmnet_cli.transport.busy_poll import PREEMPTED

    poll, _clock = poller(budget=1.0, step=10e-6)
    poll.last_wait = 0.0
    empty = int(PREEMPTED * 4 / 10e-6)  # polling for four times PREEMPTED in all, 10 µs apart
    sock = FakeSocket([None] * empty + [b"x"])
    assert poll.read(sock, memoryview(bytearray(16)), 30.0) == 1
    assert sock.flags == [DONTWAIT] * (empty + 1)
    assert poll.quiet == 0 and poll.polls(30.0)


def test_the_boundaries_of_the_budget() -> None:
    """A previous wait of exactly the budget still polls; a deadline of exactly the budget does not."""
    poll, _clock = poller(budget=2 ** -12)
    poll.last_wait = 2 ** -12
    assert poll.polls(30.0)
    assert not poll.polls(2 ** -12)


def test_a_gap_of_exactly_preempted_is_not_preemption(monkeypatch) -> None:
    from dcmnet_cli.transport import busy_poll

    monkeypatch.setattr(busy_poll, "PREEMPTED", 2 ** -15)
    poll, _clock = poller(budget=1.0, step=2 ** -15)  # binary fractions: the gaps are exact
    poll.last_wait = 0.0
    sock = FakeSocket([None] * 5 + [b"x"])
    assert poll.read(sock, memoryview(bytearray(16)), 30.0) == 1
    assert sock.flags == [DONTWAIT] * 6 and poll.quiet == 0


def test_links_count_each_open_and_close() -> None:
    links = Links()
    for _ in range(3):
        links.opened()
    links.closed()
    assert links.open == 2


def test_the_cpu_count_without_an_affinity_call(monkeypatch) -> None:
    from dcmnet_cli.transport import busy_poll

    monkeypatch.delattr(busy_poll.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(busy_poll.os, "cpu_count", lambda: 4)
    assert busy_poll.cpu_count() == 4
    monkeypatch.setattr(busy_poll.os, "cpu_count", lambda: None)  # unknown: taken as one (no polling)
    assert busy_poll.cpu_count() == 1


def test_polling_stops_when_the_budget_is_used_exactly() -> None:
    step = 2 ** -15  # binary fractions: every reading of the clock is exact
    poll, clock = poller(budget=4 * step, step=step)
    poll.last_wait = 0.0
    sock = FakeSocket([None] * 10, blocking=b"slept")
    poll.read(sock, memoryview(bytearray(16)), 30.0)
    assert sock.flags == [DONTWAIT] * 4 + [0]  # polls at 1, 2, 3 and 4 steps: the fourth ends the budget


def test_the_dcmnet_program_refuses_a_bad_budget_before_connecting() -> None:
    """The installed ``dcmnet`` itself, as a shell runs it: exit 2, one line, and no connection tried
    (a listener on the port sees nothing)."""
    import os
    import subprocess
    import sys

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "dcmnet_cli", "echo", "127.0.0.1", str(port)],
                              env={**os.environ, "DCMNET_BUSY_POLL": "-1"}, capture_output=True, text=True,
                              timeout=60)
        with pytest.raises(socket.timeout):
            listener.accept()
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["dcmnet: error: DCMNET_BUSY_POLL='-1': expected whole microseconds "
                                        "from 0 (off) to 1000000"]
    assert done.stdout == ""


def test_the_process_budget_from_its_environment(monkeypatch) -> None:
    """What every link of the process polls with: the variable's value, the default for a refused one
    (the CLI has exited with a usage error before; a library caller is not stopped), none on one CPU."""
    from dcmnet_cli.transport import busy_poll

    monkeypatch.setattr(busy_poll, "cpu_count", lambda: 4)
    monkeypatch.setenv("DCMNET_BUSY_POLL", "50")
    assert busy_poll._configured() == pytest.approx(50e-6)
    monkeypatch.setenv("DCMNET_BUSY_POLL", "fast")
    assert busy_poll._configured() == DEFAULT_BUDGET
    monkeypatch.setattr(busy_poll, "cpu_count", lambda: 1)
    assert busy_poll._configured() == 0.0
    monkeypatch.delenv("DCMNET_BUSY_POLL")
    assert busy_poll._configured() == 0.0
