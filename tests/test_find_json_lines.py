"""``dcmnet find --json`` line by line: the text of each match (the DICOM JSON model, byte for byte what it
was before the fast writer: every VR our reader handles, multi-valued, empty, non-ASCII under Specific
Character Set, sequences, escapes), and when the lines reach a pipe: while the peer pauses, before the
process exits (also on an abort and Ctrl-C), and what a reader that closes the pipe early gets.

The peer is our own scripted C-FIND SCP (127.0.0.1, in this process); the pipe tests run ``dcmnet`` as a
child process with stdout on a pipe, as ``dcmnet find --json | jq`` does.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

from dcmnet_cli.cli.main import main
from dcmnet_cli.dimse.commandset import C_FIND_RQ, c_find_rsp
from dcmnet_cli.part10.dataset_encode import to_json_dict
from dcmnet_cli.part10.dataset_json import json_line
from dcmnet_cli.services.query import encode_identifier
from dcmnet_cli.services.query_build import decode_match
from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity
from dcmnet_cli.services.session import MessageHandler
from dcmnet_cli.ul.negotiation import AcceptorPolicy
from helpers.procs import LOOPBACK, base_env, dcmnet_argv, serving

PENDING, SUCCESS = 0xFF00, 0x0000
EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"
UID = "1.2.826.0.1.3680043.8.498.9"
WAIT = 8.0  # seconds a test waits for a line that should come at once


# ------------------------------------------------------------------------------ identifiers

def _base(level: str = "IMAGE") -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    ds.SOPInstanceUID = f"{UID}.1"
    return ds


def _every_vr() -> Dataset:
    ds = _base()
    ds.RetrieveAETitle = ["AE1", "AE2"]  # AE, multi-valued
    ds.PatientAge = "042Y"  # AS
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]  # CS
    ds.StudyDate, ds.StudyTime = "20240102", "101500.123"  # DA, TM
    ds.AcquisitionDateTime = "20240102101500"  # DT
    ds.SliceThickness, ds.PixelSpacing = "2.5", ["0.5", "-1e3"]  # DS
    ds.InstanceNumber, ds.ReferencedFrameNumber = "007", ["1", "-2"]  # IS: leading zeros, negative
    ds.StudyDescription, ds.StationName = "Chest \\ abdomen", "CT1"  # LO (the backslash splits it), SH
    ds.ReferringPhysicianName = ["Doe^John", "Roe^Jane", ""]  # PN, multi-valued, one empty
    ds.add_new(0x00204000, "LT", "line one\r\nline two\tend")  # LT with control characters
    ds.add_new(0x00081030, "LO", 'say "cheese"')  # quotes
    ds.PatientComments = "back\\slash in ST? no: LT"  # LT
    ds.add_new(0x00324000, "LT", "")  # empty single-valued text
    ds.add_new(0x00400254, "LO", "")  # empty return key
    ds.add_new(0x00080081, "ST", "a \\ b \x01 \x7f")  # ST: backslash kept, a control character, DEL
    ds.add_new(0x00081190, "UR", "http://example.com/x?a=1")  # UR
    ds.add_new(0x0040A160, "UT", "unlimited \u2028 text")  # UT (U+2028: not printable, not escaped by json)
    ds.add_new(0x0008030E, "UT", "")
    ds.Rows, ds.Columns = 512, 512  # US
    ds.add_new(0x00280002, "US", 0)
    ds.add_new(0x00189219, "SS", [-3, 4])  # SS
    ds.add_new(0x00280303, "CS", "")
    ds.add_new(0x00186020, "SL", -70000)  # SL
    ds.add_new(0x00189309, "FD", [1.5, -0.0, 1e300])  # FD
    ds.add_new(0x00189327, "FD", float("nan"))
    ds.add_new(0x00189328, "FD", float("inf"))
    ds.add_new(0x00089459, "FL", 0.25)  # FL
    ds.add_new(0x00081161, "UL", [4000000000, 0])  # UL
    ds.add_new(0x0008040C, "UV", 2**63)  # UV
    ds.add_new(0x00720082, "SV", [-(2**40), 5])  # SV
    ds.add_new(0x00209165, "AT", [0x00100010, 0x7FE00010])  # AT
    ds.add_new(0x00420011, "OB", b"\x00\x01\x02\xff")  # OB
    ds.add_new(0x00281201, "OW", b"\x01\x00\x02\x00")  # OW
    ds.add_new(0x00660016, "OF", b"\x00\x00\x80\x3f")  # OF
    ds.add_new(0x003A032E, "OD", b"\x00" * 8)  # OD
    ds.add_new(0x00660040, "OL", b"")  # OL, empty
    ds.add_new(0x00720081, "OV", b"\x01" * 8)  # OV
    ds.add_new(0x00160008, "UC", ["unlimited", "characters"])  # UC
    ds.add_new(0x00090010, "LO", "PRIVATE CREATOR")
    ds.add_new(0x00091001, "UN", b"\x05\x06")  # UN (private)
    return ds


def _names(charset: str | list[str], *names: str, comments: str = "Ünïcode\nnotes") -> Dataset:
    ds = _base("PATIENT")
    ds.SpecificCharacterSet = charset
    ds.PatientName = list(names) if len(names) > 1 else names[0]
    ds.PatientID = "X1"
    ds.add_new(0x00104000, "LT", comments)
    return ds


def _sequences() -> Dataset:
    ds = _base("STUDY")
    inner = Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator, inner.CodeMeaning = "T-D3000", "SRT", 'Chest "CT"'
    item = Dataset()
    item.ScheduledStationAETitle = "CT1"
    item.ScheduledProcedureStepStartDate = "20240102"
    item.ScheduledProtocolCodeSequence = Sequence([inner, Dataset()])
    ds.ScheduledProcedureStepSequence = Sequence([item])
    ds.ReferencedStudySequence = Sequence([])  # empty sequence
    ds.PatientName = "Doe^John"
    return ds


def _return_keys_only() -> Dataset:
    ds = _base("SERIES")
    for keyword in ("PatientName", "PatientID", "StudyDate", "Modality", "SeriesNumber", "SeriesDescription"):
        setattr(ds, keyword, "")
    return ds


IDENTIFIERS: dict[str, Callable[[], Dataset]] = {
    "every VR": _every_vr,
    "UTF-8 names, multi-valued": lambda: _names("ISO_IR 192", "Müller^Zoë", 'O"Brien^Åsa', "李^华"),
    "Latin-1 name": lambda: _names("ISO_IR 100", "Müller^Jürgen"),
    "three component groups": lambda: _names("ISO_IR 192", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    "empty first component group": lambda: _names("ISO_IR 192", "=山田^太郎"),
    "ISO 2022 Japanese (pydicom's)": lambda: _names(["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう",
                                                    comments="山田\tnotes"),
    "GB18030": lambda: _names("GB18030", "Wang^XiaoDong=王^小东"),
    "sequences": _sequences,
    "return keys only": _return_keys_only,
}


def _identifier(name: str) -> Dataset:
    return IDENTIFIERS[name]()


def _reference(data: bytes, syntax: str) -> str:
    """The line as json.dumps makes it from the DICOM JSON model of the match (what the writer before
    this one was held to, and wrote)."""
    match = decode_match(data, syntax)
    return json.dumps(to_json_dict(match), ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize("syntax", [EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE])
@pytest.mark.parametrize("name", list(IDENTIFIERS))
def test_each_line_is_what_it_was(name: str, syntax: str) -> None:
    data = encode_identifier(_identifier(name), syntax)
    match = decode_match(data, syntax)
    line = json_line(match)
    assert line == _reference(data, syntax)
    assert json_line(match) == line  # the kept per-tag text changes nothing the second time
    theirs = json.loads(line)
    assert theirs == json.loads(json.dumps(to_json_dict(match)))


def test_the_text_itself() -> None:
    """The format pinned down once, whoever writes it (keys, order, escapes, numbers, names, binary)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = "IMAGE"
    ds.PatientName = ["Müller^Zoë", "Yamada^Tarou=山田^太郎"]
    ds.ReferringPhysicianName = ["Doe^John", "Roe^Jane"]
    ds.add_new(0x00081030, "LO", 'say "cheese"')
    ds.add_new(0x00204000, "LT", "a\\b\n\x01\u2028")
    ds.InstanceNumber, ds.SliceThickness = "007", "2.50"
    ds.add_new(0x00189327, "FD", [float("nan"), float("-inf"), 0.1])
    ds.add_new(0x00209165, "AT", 0x00100010)
    ds.add_new(0x00420011, "OB", b"\x00\x01\x02\xff")
    ds.StudyDate = ""
    ds.ReferencedStudySequence = Sequence([])
    line = json_line(decode_match(encode_identifier(ds, EXPLICIT_LE), EXPLICIT_LE))
    assert line == (
        '{"00080005":{"vr":"CS","Value":["ISO_IR 192"]},"00080020":{"vr":"DA"},"00080052":{"vr":"CS","Value":["IMAGE"]},'
        '"00080090":{"vr":"PN","Value":[{"Alphabetic":"Doe^John"},{"Alphabetic":"Roe^Jane"}]},'
        '"00081030":{"vr":"LO","Value":["say \\"cheese\\""]},"00081110":{"vr":"SQ","Value":[]},'
        '"00100010":{"vr":"PN","Value":[{"Alphabetic":"Müller^Zoë"},{"Alphabetic":"Yamada^Tarou","Ideographic":"山田^太郎"}]},'
        '"00180050":{"vr":"DS","Value":[2.5]},"00189327":{"vr":"FD","Value":[NaN,-Infinity,0.1]},'
        '"00200013":{"vr":"IS","Value":[7]},"00204000":{"vr":"LT","Value":["a\\\\b\\n\\u0001\u2028"]},'
        '"00209165":{"vr":"AT","Value":["00100010"]},"00420011":{"vr":"OB","InlineBinary":"AAEC/w=="}}')


# ------------------------------------------------------------------------------ a scripted peer

class _Handler(MessageHandler):
    """Runs ``script(handler)`` on a C-FIND-RQ; the script sends pending matches and the final status."""

    def __init__(self, script: Callable[["_Handler"], None], stop: threading.Event, sent: list[bytes]) -> None:
        self.script, self.stop, self.sent = script, stop, sent

    def complete(self, dataset: bytes | None) -> None:
        self.syntax = self.session.contexts[self.context_id].transfer_syntax
        try:
            self.script(self)
        except Exception:  # noqa: BLE001 - the requestor went away under us (a closed pipe): the point
            pass

    def pending(self, identifier: Dataset, now: bool = True) -> None:
        """A match; ``now=False`` holds it for the next message sent now (one write for a burst)."""
        data = encode_identifier(identifier, self.syntax)
        self.sent.append(data)
        self.session.driver.send_message(self.context_id, c_find_rsp(
            self.message.message_id, PENDING, self.message.affected_sop_class_uid, True), data, flush=now)

    def final(self, status: int = SUCCESS) -> None:
        self.session.send(self.context_id, c_find_rsp(self.message.message_id, status,
                                                      self.message.affected_sop_class_uid))

    def wait_for(self, event: threading.Event) -> None:
        """Pause until the test says so (bounded: a broken client must not hang the peer)."""
        end = time.monotonic() + 2 * WAIT
        while not event.is_set() and not self.stop.is_set() and time.monotonic() < end:
            event.wait(0.05)


@contextmanager
def find_scp(script: Callable[[_Handler], None]) -> Iterator[tuple[int, list[bytes]]]:
    """The scripted SCP on a free 127.0.0.1 port; (port, the identifiers it sent). Always stopped."""
    stop = threading.Event()
    sent: list[bytes] = []
    policy = AcceptorPolicy(ae_title="FINDSCP", contexts=lambda uid_: ALL_UNCOMPRESSED)
    entity = ApplicationEntity(policy, handlers={C_FIND_RQ: lambda: _Handler(script, stop, sent)})
    try:
        with serving(entity, "json-lines-scp") as port:
            yield port, sent
    finally:
        stop.set()


def _argv(port: int, *extra: str, fmt: tuple[str, ...] = ("--json",)) -> list[str]:
    return ["find", "-aec", "FINDSCP", LOOPBACK, str(port), "-L", "IMAGE", "-k", "SOPInstanceUID", *fmt, *extra]


def test_cli_lines_for_varied_identifiers(capsys) -> None:
    def script(h: _Handler) -> None:
        for name in IDENTIFIERS:
            h.pending(_identifier(name))
        h.final()

    with find_scp(script) as (port, sent):
        with pytest.raises(SystemExit) as done:
            main(_argv(port))
    out, err = capsys.readouterr()
    assert done.value.code == 0, err
    assert out.splitlines() == [_reference(data, EXPLICIT_LE) for data in sent]
    assert out.endswith("\n") and len(sent) == len(IDENTIFIERS)


# ------------------------------------------------------------------------------ on a pipe

def _image(number: int) -> Dataset:
    ds = _base()
    ds.SOPInstanceUID = f"{UID}.{number}"
    ds.InstanceNumber = number
    return ds


def _start(port: int, *extra: str, fmt: tuple[str, ...] = ("--json",)) -> subprocess.Popen[bytes]:
    return subprocess.Popen(dcmnet_argv(*_argv(port, *extra, fmt=fmt)), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base_env())


def _read_line(proc: subprocess.Popen[bytes], buffered: bytearray) -> bytes:
    """The next line on the child's stdout within WAIT seconds (fails the test otherwise)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    end = time.monotonic() + WAIT
    while b"\n" not in buffered:
        left = end - time.monotonic()
        assert left > 0 and select.select([fd], [], [], left)[0], f"no line within {WAIT} s (have {bytes(buffered)!r})"
        chunk = os.read(fd, 65536)
        assert chunk, f"stdout closed before a whole line (have {bytes(buffered)!r})"
        buffered += chunk
    line, _, rest = bytes(buffered).partition(b"\n")
    buffered[:] = rest
    return line


def _finish(proc: subprocess.Popen[bytes]) -> tuple[int, bytes, str]:
    try:
        out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err.decode("utf-8", "replace")


@pytest.mark.parametrize("fmt", [("--json",), ("--format", "tsv")])
def test_each_match_reaches_the_pipe_while_the_peer_pauses(fmt: tuple[str, ...]) -> None:
    """The peer sends a match, then waits until the reader has it: a line buffered until the next match
    or the end would never come (the reader's wait fails after WAIT seconds). TSV streams the same way."""
    seen = [threading.Event(), threading.Event()]

    def script(h: _Handler) -> None:
        for number, event in enumerate(seen, start=1):
            h.pending(_image(number))
            h.wait_for(event)
        h.final()

    with find_scp(script) as (port, _sent):
        proc = _start(port, fmt=fmt)
        try:
            buffered = bytearray()
            if fmt != ("--json",):
                header = _read_line(proc, buffered).split(b"\t")
                column = header.index(b"SOPInstanceUID")
            for number, event in enumerate(seen, start=1):
                line = _read_line(proc, buffered)
                if fmt == ("--json",):
                    assert json.loads(line)["00200013"]["Value"] == [number]
                else:
                    assert line.split(b"\t")[column] == f"{UID}.{number}".encode()
                event.set()
        finally:
            for event in seen:
                event.set()
            code, rest, err = _finish(proc)
    assert code == 0, err
    assert rest == b"" and not buffered


@pytest.mark.parametrize("ending", ["success", "abort"])
def test_every_match_is_on_the_pipe_when_the_process_exits(ending: str) -> None:
    """A burst of matches and the end in one write of the peer (so no pause lets the client flush before
    the end): every match is out when the process exits, also when the peer aborts (exit 6)."""
    count = 150

    def script(h: _Handler) -> None:
        for number in range(1, count + 1):
            h.pending(_image(number), now=False)
        if ending == "abort":
            h.session.driver.abort()
        else:
            h.final()

    with find_scp(script) as (port, sent):
        code, out, err = _finish(_start(port))
    assert code == (0 if ending == "success" else 6), err
    lines = out.decode("utf-8").splitlines()
    assert lines == [_reference(data, EXPLICIT_LE) for data in sent] and len(lines) == count
    assert "Traceback" not in err


def test_ctrl_c_while_the_peer_pauses_keeps_the_matches() -> None:
    go_on = threading.Event()

    def script(h: _Handler) -> None:
        for number in range(1, 4):
            h.pending(_image(number))
        h.wait_for(go_on)
        h.final()

    with find_scp(script) as (port, _sent):
        proc = _start(port)
        try:
            buffered = bytearray()
            lines = [_read_line(proc, buffered) for _ in range(3)]
            proc.send_signal(signal.SIGINT)
            code, rest, err = _finish(proc)
        finally:
            go_on.set()
            if proc.poll() is None:
                proc.kill()
    assert code == 130, err
    assert [json.loads(line)["00200013"]["Value"] for line in lines] == [[1], [2], [3]]
    assert rest == b"" and "Traceback" not in err


def test_a_reader_that_closes_the_pipe_early() -> None:
    """``dcmnet find --json | head -1``: exit 1 (click's code for a closed stdout), nothing on stderr,
    no traceback, and the query ends at once (the association is aborted, not waited out)."""
    def script(h: _Handler) -> None:
        number = 0
        while not h.stop.is_set() and number < 200_000:
            number += 1
            h.pending(_image(number))
        h.final()

    with find_scp(script) as (port, _sent):
        proc = _start(port)
        try:
            first = _read_line(proc, bytearray())
            assert proc.stdout is not None
            proc.stdout.close()
            started = time.monotonic()
            proc.wait(WAIT)
            took = time.monotonic() - started
            err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert json.loads(first)["00200013"]["Value"] == [1]
    assert proc.returncode == 1, err
    assert err == "" and took < WAIT


@pytest.mark.parametrize("fmt", [("--json",), ("--format", "tsv")])
def test_no_stdout_at_all(fmt: tuple[str, ...]) -> None:
    """``dcmnet find ... >&-`` (stdout closed before start): the lines go nowhere, the query still counts
    and exits 0, no traceback."""
    def script(h: _Handler) -> None:
        h.pending(_image(1))
        h.final()

    with find_scp(script) as (port, _sent):
        done = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", *dcmnet_argv(*_argv(port, fmt=fmt))],
                              stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, env=base_env(), timeout=WAIT)
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0, err
    assert err.splitlines() == ["1 match"]
