"""``dcmnet find`` against a hostile C-FIND SCP: an identifier too big to hold, pending responses that
never end. The SCP is our own ApplicationEntity on a free 127.0.0.1 port (always stopped); the CLI runs
in-process, so what is asserted is the exit code and the one-line error a user sees."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from pydicom import Dataset

from dcmnet_cli.cli.exitcodes import ExitCode
from dcmnet_cli.cli.main import main
from dcmnet_cli.dimse.commandset import C_FIND_RQ, c_find_rsp
from dcmnet_cli.errors import AssociationAborted, TimeoutExpired
from dcmnet_cli.services.peer import Peer
from dcmnet_cli.services.query import MODELS, QuerySpec, encode_identifier
from dcmnet_cli.services.scp.entity import ApplicationEntity, MessageHandler
from dcmnet_cli.services.scu.find import find
from dcmnet_cli.transport.client import Timeouts
from dcmnet_cli.ul.negotiation import AcceptorPolicy
from helpers.procs import serving

LOOPBACK = "127.0.0.1"
SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
STUDY = "1.2.826.0.1.3680043.8.498.7"
TIMEOUTS = Timeouts(connect=5, acse=5, dimse=5, network=5)


def _big_identifier(size: int, syntax: str) -> bytes:
    """A valid identifier whose last element (an OB private-free Pixel Data) makes it ``size`` bytes."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = STUDY
    head = encode_identifier(ds, syntax)
    import struct

    if syntax == "1.2.840.10008.1.2":
        element = struct.pack("<HHI", 0x7FE0, 0x0010, size - len(head) - 8)
    else:
        element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, size - len(head) - 12)
    return head + element + bytes(size - len(head) - len(element))


class _Handler(MessageHandler):
    def __init__(self, script: Callable[["_Handler"], None], stop: threading.Event) -> None:
        self.script, self.stop = script, stop

    def complete(self, dataset: bytes | None) -> None:
        self.syntax = self.session.contexts[self.context_id].transfer_syntax
        try:
            self.script(self)
        except Exception:  # noqa: BLE001 - the requestor aborted under us: that is the point
            pass

    def pending(self, identifier: bytes) -> None:
        self.session.send(self.context_id, c_find_rsp(self.message.message_id, 0xFF00,
                                                      self.message.affected_sop_class_uid, True), identifier)


@contextmanager
def hostile_find_scp(script: Callable[[_Handler], None]) -> Iterator[int]:
    stop = threading.Event()
    policy = AcceptorPolicy(ae_title="HOSTILE", contexts=lambda uid: SYNTAXES)
    entity = ApplicationEntity(policy, handlers={C_FIND_RQ: lambda: _Handler(script, stop)})
    try:
        with serving(entity, "hostile-find") as port:
            yield port
    finally:
        stop.set()


def _query() -> QuerySpec:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    return QuerySpec(MODELS["study"], "STUDY", identifier)


def dcmnet_find(capsys, port: int, *extra: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(["find", "-aec", "HOSTILE", LOOPBACK, str(port), "-k", "QueryRetrieveLevel=STUDY",
              "-k", "StudyInstanceUID", *extra])
    out, err = capsys.readouterr()
    return int(done.value.code), out, err


def _huge(handler: _Handler) -> None:
    handler.pending(_big_identifier(3 << 20, handler.syntax))
    handler.session.send(handler.context_id, c_find_rsp(handler.message.message_id, 0x0000,
                                                        handler.message.affected_sop_class_uid))


def _endless(handler: _Handler) -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = STUDY
    identifier = encode_identifier(ds, handler.syntax)
    end = time.monotonic() + 15
    while not handler.stop.is_set() and time.monotonic() < end:
        handler.pending(identifier)
        time.sleep(0.05)


def test_identifier_over_the_cap_aborts_with_its_reason() -> None:
    with hostile_find_scp(_huge) as port:
        with pytest.raises(AssociationAborted, match="C-FIND-RSP identifier larger than 1 MiB"):
            find(Peer(LOOPBACK, port, "HOSTILE"), _query(), "DCMNET", TIMEOUTS, max_identifier=1 << 20)
        # the server is still there, and under the cap the same identifier is a match
        seen: list = []
        find(Peer(LOOPBACK, port, "HOSTILE"), _query(), "DCMNET", TIMEOUTS._replace(dimse=1),
             max_identifier=4 << 20, on_match=lambda n, ds: seen.append(ds.StudyInstanceUID))
    assert seen == [STUDY]


def test_cli_max_identifier_exits_6_with_the_reason(capsys) -> None:
    with hostile_find_scp(_huge) as port:
        code, out, err = dcmnet_find(capsys, port, "--max-identifier", str(2 << 20))
    assert code == ExitCode.ABORTED, err
    assert "C-FIND-RSP identifier larger than 2 MiB" in err
    assert "Traceback" not in err and "internal" not in err.lower()


def test_deadline_ends_endless_pending_responses() -> None:
    with hostile_find_scp(_endless) as port:
        started = time.monotonic()
        with pytest.raises(TimeoutExpired, match="deadline 0.8"):
            find(Peer(LOOPBACK, port, "HOSTILE"), _query(), "DCMNET", TIMEOUTS, deadline=0.8)
        assert time.monotonic() - started < 3.0


def test_cli_deadline_exits_6_while_the_dimse_timeout_keeps_being_reset(capsys) -> None:
    with hostile_find_scp(_endless) as port:
        started = time.monotonic()
        code, out, err = dcmnet_find(capsys, port, "-td", "5", "--deadline", "1", "--json")
        elapsed = time.monotonic() - started
    assert code == ExitCode.ABORTED, err
    assert elapsed < 4.0
    assert "deadline" in err or "deadline" in out
