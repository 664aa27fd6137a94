"""``move``/``get`` against peers that bend the rules, and the guards on what we ask for.

A scripted Q/R SCP (tests/test_move_get_hostile.py's ``hostile_peer``) answers like Orthanc 1.10 does
to a failed C-GET (elements of group 0008 in the command set), aborts in the middle of a --from-json
list, or answers the statuses whose likely cause we name. All in-process, 127.0.0.1 only.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from dcmnet_cli.cli.exitcodes import ExitCode
from dcmnet_cli.dimse.commandset import CommandSetError, c_get_rsp, decode
from helpers.procs import free_port
from dcmnet_cli.dimse.assembler import MessageComplete
from dcmnet_cli.dimse.commandset import C_GET_RQ, c_store_rq
from test_move_get_hostile import CT, LOOPBACK, STUDY, Script, dcmnet, hostile_peer, move

FAILED_UID = "1.2.826.0.1.3680043.8.498.99"
SERIES = "1.2.826.0.1.3680043.8.498.1.1"


def _element(group: int, elem: int, value: bytes) -> bytes:
    return struct.pack("<HHI", group, elem, len(value)) + value


def orthanc_failed_get_rsp(message_id: int, sop_class: str, count_foreign: bool) -> bytes:
    """A C-GET-RSP 0xC000, 1 completed / 1 failed, with (0008,0000) and (0008,0058) after group 0000,
    as Orthanc 1.10 sends it; ``count_foreign``: its group length counts the foreign elements too."""
    body = c_get_rsp(message_id, 0xC000, sop_class, remaining=0, completed=1, failed=1, warning=0).encode()[12:]
    uid = FAILED_UID.encode() + (b"\0" if len(FAILED_UID) % 2 else b"")
    foreign = _element(8, 0x0000, struct.pack("<I", 8 + len(uid))) + _element(8, 0x0058, uid)
    length = len(body) + (len(foreign) if count_foreign else 0)
    return _element(0, 0, struct.pack("<I", length)) + body + foreign


class RawCommand:
    """What ``send_message`` needs of a message: its encoded command set, here given as bytes."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def encode(self) -> bytes:
        return self.raw


# --------------------------------------------------------------------------- command set tolerance


@pytest.mark.parametrize("count_foreign", [False, True])
def test_trailing_elements_of_another_group_are_kept_apart(count_foreign: bool) -> None:
    message = decode(orthanc_failed_get_rsp(7, "1.2.3", count_foreign))
    assert (message.status, message.completed, message.failed) == (0xC000, 1, 1)
    assert [tag for tag, _ in message.foreign] == [0x00080000, 0x00080058]
    assert message.encode()[:12] != b"" and b"\x08\x00\x58\x00" not in message.encode()  # never sent back


def test_elements_of_another_group_first_or_in_between_are_still_refused() -> None:
    body = c_get_rsp(7, 0, "1.2.3").encode()[12:]
    with pytest.raises(CommandSetError, match="outside group 0000"):
        decode(_element(8, 0x0058, b"1.2\0") + body)
    with pytest.raises(CommandSetError, match="after elements of another group"):
        decode(body[:14] + _element(8, 0x0058, b"1.2\0") + body[14:])


def test_get_reads_an_orthanc_style_failed_response_and_releases(capsys, tmp_path: Path) -> None:
    """Orthanc 1.10's failed C-GET: 0xC000, 1 completed / 1 failed, the failed UID from (0008,0058)."""
    def script(s: Script) -> None:
        raw = orthanc_failed_get_rsp(s.message.message_id, s.message.affected_sop_class_uid, False)
        s.channel.send_message(s.context_id, RawCommand(raw))

    with hostile_peer(script) as port:
        argv = ("get", "-aec", "HOSTILE", LOOPBACK, str(port), "-od", str(tmp_path), "--storage-class",
                "CTImageStorage", "-k", f"StudyInstanceUID={STUDY}")
        code, _, err = dcmnet(capsys, *argv, "-v")
        assert code == ExitCode.FAILURE, err
        assert "0xC000" in err and "1 completed, 1 failed" in err and FAILED_UID in err
        assert "(0008,0058)" in err and "outside group 0000" in err  # named with -v
        assert "aborted" not in err.lower()
        code, out, err = dcmnet(capsys, *argv, "--json")
    summary = json.loads(out)
    assert code == ExitCode.FAILURE and summary["exit_code"] == 7 and summary["error"] is None
    assert summary["status"] == "0xC000" and (summary["completed"], summary["failed"]) == (1, 1)
    assert summary["failed_sop_instance_uids"] == [FAILED_UID]


# --------------------------------------------------------------------------- one request, one operation


def _lines(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "matches.ndjson"
    path.write_text("".join(json.dumps({"00080052": {"vr": "CS", "Value": ["STUDY"]},
                                        "0020000D": {"vr": "UI", "Value": [f"{STUDY}.{n}"]}}) + "\n"
                            for n in range(count)))
    return path


def test_an_aborted_request_does_not_skip_the_rest_of_from_json(capsys, tmp_path: Path) -> None:
    calls: list[int] = []

    def script(s: Script) -> None:
        calls.append(len(calls))
        if len(calls) == 2:
            s.channel.abort()  # the peer aborts in the middle of the second request
            return
        s.rsp(0x0000, completed=1, failed=0, warning=0)

    with hostile_peer(script) as port:
        code, out, err = dcmnet(capsys, "move", "-aec", "HOSTILE", LOOPBACK, str(port), "--dest", "ELSEWHERE",
                                "--from-json", str(_lines(tmp_path, 4)), "--json")
    summary = json.loads(out)
    assert code == ExitCode.ABORTED, err
    assert len(calls) == 4 and summary["completed"] == 3 and summary["not_attempted"] == []
    assert [op["exit_code"] for op in summary["operations"]] == [0, 6, 0, 0]
    assert summary["operations"][1]["status"] is None and "abort" in summary["operations"][1]["error"].lower()
    assert summary["exit_code"] == 6


def test_a_peer_that_aborts_every_request_gets_each_one_tried(capsys, tmp_path: Path) -> None:
    with hostile_peer(lambda s: s.channel.abort()) as port:
        code, out, err = dcmnet(capsys, "move", "-aec", "HOSTILE", LOOPBACK, str(port), "--dest", "ELSEWHERE",
                                "--from-json", str(_lines(tmp_path, 3)), "--json")
    summary = json.loads(out)
    assert code == ExitCode.ABORTED, err
    assert [op["exit_code"] for op in summary["operations"]] == [6, 6, 6] and summary["exit_code"] == 6


def test_unreachable_peer_for_the_remaining_requests(capsys, tmp_path: Path) -> None:
    """Unit level: a refused reconnect lists the requests never sent; the run exits 4, not 0."""
    from dcmnet_cli.services.peer import Peer
    from dcmnet_cli.services.scu.retrieve import MOVE, retrieve
    from dcmnet_cli.services.scu.retrieve_requests import requests_from_ndjson

    requests, _ = requests_from_ndjson(_lines(tmp_path, 2).read_text().splitlines(), "study", None)
    result = retrieve(MOVE, Peer(LOOPBACK, free_port(), "NOBODY"), "DCMNET", "1.2.840.10008.5.1.4.1.2.2.2", requests,
                      destination="ELSEWHERE")
    assert result.operations == [] and len(result.not_attempted) == 2 and result.error is not None
    from dcmnet_cli.cli.retrieve import exit_code

    assert exit_code(result, None, [], False) is ExitCode.CONNECT


# --------------------------------------------------------------------------- keys required


@pytest.mark.parametrize(("argv", "words"), [
    ((), "no matching key"),
    (("-k", "PatientName=*"), "no matching key"),
    (("-L", "SERIES", "-k", f"SeriesInstanceUID={SERIES}"), "StudyInstanceUID"),
    (("-L", "IMAGE", "-k", f"StudyInstanceUID={STUDY}"), "SeriesInstanceUID, SOPInstanceUID"),
])
@pytest.mark.parametrize("command", ["move", "get"])
def test_a_retrieve_without_keys_is_refused(capsys, command: str, argv: tuple[str, ...], words: str) -> None:
    code, out, err = dcmnet(capsys, command, "-aec", "X", LOOPBACK, str(free_port()), "--dest", "D", *argv) \
        if command == "move" else dcmnet(capsys, command, "-aec", "X", LOOPBACK, str(free_port()), *argv)
    assert code == ExitCode.USAGE, err
    assert words in err and "--all" in err and not out


def test_all_allows_a_retrieve_without_keys(capsys) -> None:
    with hostile_peer(lambda s: s.rsp(0x0000, completed=2, failed=0, warning=0)) as port:
        code, _, err = dcmnet(capsys, "move", "-aec", "HOSTILE", LOOPBACK, str(port), "--dest", "D", "--all")
        assert code == 0, err
        code, _, err = dcmnet(capsys, "move", "-aec", "HOSTILE", LOOPBACK, str(port), "--dest", "D", "-L", "SERIES",
                              "-k", f"StudyInstanceUID={STUDY}", "-k", f"SeriesInstanceUID={SERIES}")
        assert code == 0, err


# --------------------------------------------------------------------------- hints


def test_move_destination_unknown_names_the_ae(capsys) -> None:
    with hostile_peer(lambda s: s.rsp(0xA801, completed=0, failed=0, warning=0)) as port:
        code, _, err = move(capsys, port)
    assert code == ExitCode.FAILURE
    assert "hint: the peer does not know AE ELSEWHERE" in err and "HOSTILE" in err


def test_store_port_that_nothing_reached_says_so(capsys, tmp_path: Path) -> None:
    """The peer sends our AE's objects elsewhere: 0xA702, 6 failed, and nothing arrived on our port."""
    store_port = free_port()
    with hostile_peer(lambda s: s.rsp(0xA702, completed=0, failed=6, warning=0)) as port:
        code, _, err = dcmnet(capsys, "move", "-aec", "HOSTILE", LOOPBACK, str(port), "--store-port", str(store_port),
                              "--bind", LOOPBACK, "-od", str(tmp_path), "-k", f"StudyInstanceUID={STUDY}")
    assert code == ExitCode.FAILURE
    assert (f"no association arrived on :{store_port}; check that HOSTILE's entry for AE DCMNET points at this "
            f"host and port {store_port}") in err


def test_get_out_of_resources_names_transfer_syntaxes(capsys, tmp_path: Path) -> None:
    with hostile_peer(lambda s: s.rsp(0xA702, completed=0, failed=1, warning=0)) as port:
        code, _, err = dcmnet(capsys, "get", "-aec", "HOSTILE", LOOPBACK, str(port), "-od", str(tmp_path),
                              "--storage-class", "CTImageStorage", "-k", f"StudyInstanceUID={STUDY}")
    assert code == ExitCode.FAILURE and "--accept" in err and "hint:" in err


def test_hints_table_shapes() -> None:
    from dcmnet_cli.cli.retrieve_hints import HINTS, hint_for
    from dcmnet_cli.services.scu.retrieve import Operation

    assert all(kind in (None, "move", "get") and low <= high and when in ("any", "failed", "silent-receiver")
               for kind, low, high, when, _t in HINTS)
    assert hint_for("move", Operation("x", status=0x0000), {}) is None
    assert "could not process" in (hint_for("get", Operation("x", status=0xC123), {"peer": "P"}) or "")


# --------------------------------------------------------------------------- C-GET contexts


def test_get_contexts_fit_128_with_compressed_ones_first_for_the_first_classes() -> None:
    from dcmnet_cli.services.scu.retrieve import COMPRESSED_SYNTAXES, STORAGE_SYNTAXES, _plan
    from dcmnet_cli.services.scu.retrieve_classes import DEFAULT_STORAGE_CLASSES

    pairs, roles, _ = _plan("get", "1.2.840.10008.5.1.4.1.2.2.3", None, DEFAULT_STORAGE_CLASSES)
    assert len(pairs) == 128 and len(roles) == len(DEFAULT_STORAGE_CLASSES)
    storage = pairs[2:]
    assert {uid for uid, _ in storage} == set(DEFAULT_STORAGE_CLASSES)
    assert storage[0] == (DEFAULT_STORAGE_CLASSES[0], COMPRESSED_SYNTAXES)  # CT: compressed context first
    assert storage[1] == (DEFAULT_STORAGE_CLASSES[0], STORAGE_SYNTAXES)
    pairs, _, _ = _plan("get", "1.2.840.10008.5.1.4.1.2.2.3", None, ["1.2.3", "1.2.4"], ["RLELossless"])
    assert pairs[2:] == [("1.2.3", ("RLELossless",)), ("1.2.4", ("RLELossless",))]
    pairs, _, _ = _plan("get", "1.2.840.10008.5.1.4.1.2.2.3", None, ["1.2.3"], ["1.2.840.10008.1.2", "1.2.840.10008.1.2.5"])
    assert pairs[2:] == [("1.2.3", ("1.2.840.10008.1.2.5",)), ("1.2.3", ("1.2.840.10008.1.2",))]


# --------------------------------------------------------------------------- C-FIND probe, then C-GET


MR = "1.2.840.10008.5.1.4.1.1.4"
RLE = "1.2.840.10008.1.2.5"


def _by_syntax_peer(objects: list[tuple[str, str, str, bytes]], returns_sop_class: bool = True):  # type: ignore[no-untyped-def]
    """A Q/R SCP that answers C-FIND down to IMAGE level and, for C-GET, sends each object
    (class, instance, transfer syntax, data set bytes) on the context accepted with its own syntax, as
    Orthanc does; records the A-ASSOCIATE-RQ of each C-GET association."""
    from dcmnet_cli.dimse.commandset import C_FIND_RQ
    from dcmnet_cli.services.scp.entity import ApplicationEntity
    from dcmnet_cli.ul.negotiation import AcceptorPolicy
    from qr_helpers import ScriptedFindSCP, _FindHandler
    from test_move_get_hostile import SYNTAXES, _ScriptHandler

    from pydicom import Dataset

    def answer(identifier: Dataset) -> list:
        level, replies = identifier.QueryRetrieveLevel, []
        rows = {"STUDY": [{"StudyInstanceUID": STUDY}],
                "SERIES": [{"SeriesInstanceUID": f"{STUDY}.1"}, {"SeriesInstanceUID": f"{STUDY}.2"}],
                "IMAGE": [{"SOPInstanceUID": inst, **({"SOPClassUID": cls} if returns_sop_class else {})}
                          for cls, inst, _ts, _data in objects
                          if inst.startswith(str(identifier.get("SeriesInstanceUID", "")))]}[level]
        for row in rows:
            ds = Dataset()
            ds.QueryRetrieveLevel = level
            for keyword, value in row.items():
                setattr(ds, keyword, value)
            replies.append((0xFF00, ds))
        return [*replies, (0x0000, None)]

    requests: list = []

    def get(s: Script) -> None:
        requests.append(s.channel.assoc.request_pdu)
        done = 0
        for sop_class, instance, syntax, data in objects:
            context = next(c for c in s.channel.assoc.contexts.values()
                           if c.abstract_syntax == sop_class and c.transfer_syntax == syntax)
            s.channel.send_message(context.context_id, c_store_rq(99, sop_class, instance), data)
            while True:
                event = s.channel.next_event(5.0)
                if isinstance(event, MessageComplete):
                    break
            done += 1
        s.rsp(0x0000, completed=done, failed=0, warning=0)

    finder = ScriptedFindSCP(answer)
    policy = AcceptorPolicy(ae_title="BYSYNTAX", contexts=lambda uid: (*SYNTAXES, RLE), scp_roles=lambda uid: True)
    entity = ApplicationEntity(policy, handlers={C_FIND_RQ: lambda: _FindHandler(finder),
                                                 C_GET_RQ: lambda: _ScriptHandler(get)})
    return entity, requests


def _objects() -> list[tuple[str, str, str, bytes]]:
    from pydicom import Dataset

    from dcmnet_cli.services.query import encode_identifier

    def data_set(sop_class: str, instance: str) -> bytes:
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID = sop_class, instance, STUDY
        return encode_identifier(ds, "1.2.840.10008.1.2.1")  # explicit VR LE body (RLE only wraps pixels)

    return [(CT, f"{STUDY}.1.1", RLE, data_set(CT, f"{STUDY}.1.1")),
            (MR, f"{STUDY}.2.1", "1.2.840.10008.1.2.1", data_set(MR, f"{STUDY}.2.1"))]


def test_get_probes_the_classes_and_takes_rle_and_uncompressed_from_a_by_syntax_peer(capsys, tmp_path: Path) -> None:
    from helpers.procs import serving

    entity, requests = _by_syntax_peer(_objects())
    with serving(entity, "by-syntax-peer") as port:
        code, out, err = dcmnet(capsys, "-v", "get", "-aec", "BYSYNTAX", LOOPBACK, str(port), "-od", str(tmp_path),
                                "-k", f"StudyInstanceUID={STUDY}", "--json")
    assert code == 0, err
    assert "C-FIND probe: 2 SOP classes" in err
    assert len(requests[0].presentation_contexts) == 2 + 4  # GET, FIND, then CT and MR each compressed + uncompressed
    received = {r["sop_instance_uid"]: r for r in json.loads(out)["received"]}
    assert set(received) == {f"{STUDY}.1.1", f"{STUDY}.2.1"}
    from pydicom import dcmread

    assert dcmread(received[f"{STUDY}.1.1"]["path"]).file_meta.TransferSyntaxUID == RLE


def test_probe_falls_back_to_the_default_list_when_the_peer_hides_sop_classes(capsys, tmp_path: Path) -> None:
    from helpers.procs import serving

    entity, requests = _by_syntax_peer(_objects(), returns_sop_class=False)
    with serving(entity, "by-syntax-peer") as port:
        code, _, err = dcmnet(capsys, "-v", "get", "-aec", "BYSYNTAX", LOOPBACK, str(port), "-od", str(tmp_path),
                              "-k", f"StudyInstanceUID={STUDY}")
    assert code == 0, err
    assert "proposing the default list" in err and len(requests[0].presentation_contexts) == 128
