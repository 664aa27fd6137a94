"""Local vs remote faults: a ``-k`` value its VR cannot hold is a usage error (exit 2) caught before any
association, an identifier we cannot encode is ours (never 6, never 70), a malformed one from the peer is
the peer's (6); and the error → exit-code table covers every exception class of ``errors.py``."""

from __future__ import annotations

import inspect
import shutil
import warnings

import pytest
from pydicom import Dataset

from dcmnet_cli import errors
from dcmnet_cli.cli.exitcodes import ERROR_CODES, ExitCode, for_error
from dcmnet_cli.cli.main import main
from dcmnet_cli.dimse.commandset import CommandSetError
from dcmnet_cli.errors import (
    DcmnetError,
    DIMSEError,
    LocalDIMSEError,
    QueryKeyError,
    RemoteDIMSEError,
)
from dcmnet_cli.services.peer import Peer
from dcmnet_cli.services.query import (
    MODELS,
    QuerySpec,
    build_identifier,
    decode_identifier,
    encode_identifier,
    value_problem,
)
from helpers.procs import LOOPBACK, free_port
from qr_helpers import dcmqrscp_server, make_datasets

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _rows_70000() -> Dataset:
    """A data set holding a value US cannot encode (pydicom warns when it is set; that is not the test)."""
    ds = Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.add_new(0x00280010, "US", 70000)
    return ds


# ------------------------------------------------------------------------------------ value checks

@pytest.mark.parametrize("vr, value", [
    ("US", "0"), ("US", "65535"), ("US", "0512"), ("US", "0x10"), ("US", "1\\2"),
    ("SS", "-32768"), ("SS", "32767"), ("UL", "4294967295"), ("SL", "-2147483648"),
    ("FL", "1.5"), ("FL", "-3.4e38"), ("FD", "1e300"), ("AT", "0028,0010"), ("AT", "(0028,0010)"), ("AT", "Rows"),
    ("IS", "12"), ("IS", " -7 "), ("IS", "2147483647"), ("DS", "1.5"), ("DS", "-2e3"), ("DS", ".5"), ("DS", "1\\2.5"),
    ("DA", "20240229"), ("DA", "20240101-20241231"), ("DA", "20240101-"), ("DA", "-20231231"), ("DA", "*"),
    ("TM", "12"), ("TM", "1230"), ("TM", "123059.123456"), ("TM", "0800-1700"), ("TM", "-1200"),
    ("DT", "2024"), ("DT", "20240101120000.5-0500"), ("DT", "20240101-20240202"), ("DT", "2024-"),
    ("UI", "1.2.840.10008.1.2"), ("UI", "1.2.3\\4.5.6"), ("UI", "*"),
    ("PN", "Doe*"), ("LO", "anything ? * goes"),  # VRs with wildcards are not checked
])
def test_values_that_fit(vr: str, value: str) -> None:
    assert value_problem(vr, value) is None


@pytest.mark.parametrize("vr, value, bad, allowed", [
    ("US", "70000", "70000", "0..65535"), ("US", "-1", "-1", "0..65535"), ("US", "1\\70000", "70000", "0..65535"),
    ("US", "1.5", "1.5", "0..65535"), ("SS", "32768", "32768", "-32768..32767"), ("UL", "4294967296", "4294967296", "0..4294967295"),
    ("SL", "2147483648", "2147483648", "-2147483648..2147483647"), ("FL", "1e39", "1e39", "3.402823e+38"),
    ("FL", "nan", "nan", "finite"), ("FD", "inf", "inf", "finite"), ("FD", "x", "x", "finite"),
    ("AT", "NoSuchKeyword", "NoSuchKeyword", "gggg,eeee"), ("IS", "abc", "abc", "integer"),
    ("IS", "2147483648", "2147483648", "-2147483648..2147483647"), ("IS", "1.5", "1.5", "integer"),
    ("DS", "1e400", "1e400", "decimal"), ("DS", "12345678901234567", "12345678901234567", "16 characters"),
    ("DS", "abc", "abc", "decimal"), ("DA", "20241301", "20241301", "YYYYMMDD"), ("DA", "20230229", "20230229", "YYYYMMDD"),
    ("DA", "2024*", "2024*", "YYYYMMDD"), ("DA", "2024-01-01", "2024-01-01", "YYYYMMDD"), ("DA", "-", "-", "YYYYMMDD"),
    ("TM", "2500", "2500", "HH"), ("TM", "12:30", "12:30", "HH"), ("DT", "20241301", "20241301", "YYYY"),
    ("UI", "1.2.a", "1.2.a", "UID"), ("UI", "1.2.3*", "1.2.3*", "UID"), ("UI", "1." * 40 + "1", "1." * 40 + "1", "64"),
])
def test_values_that_do_not_fit(vr: str, value: str, bad: str, allowed: str) -> None:
    problem = value_problem(vr, value)
    assert problem is not None and problem[0] == bad and allowed in problem[1]


def test_bad_key_names_the_key_and_the_range() -> None:
    with pytest.raises(QueryKeyError) as info:
        build_identifier(["PatientID=1", "Rows=70000"], "STUDY", None, True)
    message = str(info.value)
    assert message.startswith("Rows=70000:") and "Rows (0028,0010)" in message and "US" in message
    assert "0..65535" in message and "\n" not in message
    assert info.value.key == "Rows=70000"
    assert isinstance(info.value, ValueError) and isinstance(info.value, LocalDIMSEError)
    assert for_error(info.value) is ExitCode.USAGE


def test_bad_key_inside_a_sequence_is_named() -> None:
    with pytest.raises(QueryKeyError, match=r"ReferencedSeriesSequence\[0\]\.Rows=-5: '-5'"):
        build_identifier(["ReferencedSeriesSequence[0].Rows=-5"], "STUDY", None, False)


def test_an_unencodable_base_fails_when_built_not_on_the_wire() -> None:
    base = _rows_70000()  # e.g. from -f: not a -k value, so only the trial encoding sees it
    with pytest.raises(QueryKeyError, match="cannot encode the identifier") as info:
        build_identifier([], "STUDY", base, False)
    message = str(info.value)  # one line: pydicom's own text carries whole tracebacks
    assert "(0028,0010) Rows:" in message and "65535" in message
    assert "\n" not in message and "Traceback" not in message


def test_encode_is_local_decode_is_remote() -> None:
    ds = _rows_70000()
    with pytest.raises(LocalDIMSEError) as local:
        encode_identifier(ds, EXPLICIT_LE)
    assert "\n" not in str(local.value) and "(0028,0010) Rows" in str(local.value)
    assert not isinstance(local.value, RemoteDIMSEError) and for_error(local.value) is ExitCode.INPUT
    with pytest.raises(RemoteDIMSEError) as remote:
        decode_identifier(b"\x10\x00\x10\x00PN\x20\x00Doe", EXPLICIT_LE)
    assert for_error(remote.value) is ExitCode.ABORTED


# ------------------------------------------------------------------------------ the exit-code table

def _error_classes() -> list[type[BaseException]]:
    return [obj for _name, obj in inspect.getmembers(errors, inspect.isclass)
            if issubclass(obj, BaseException) and obj.__module__ == errors.__name__]


def test_every_error_class_has_an_entry() -> None:
    classes = _error_classes()
    assert DcmnetError in classes and QueryKeyError in classes
    missing = [cls.__name__ for cls in classes if cls not in ERROR_CODES]
    assert not missing, f"add these to cli/exitcodes.py ERROR_CODES: {missing}"


def test_table_entries_are_exit_codes_and_errors() -> None:
    assert all(isinstance(code, ExitCode) for code in ERROR_CODES.values())
    assert all(issubclass(cls, BaseException) for cls in ERROR_CODES)


@pytest.mark.parametrize("error, code", [
    (QueryKeyError("x"), ExitCode.USAGE),  # most-derived wins over LocalDIMSEError (3) and DIMSEError (6)
    (LocalDIMSEError("x"), ExitCode.INPUT),
    (RemoteDIMSEError("x"), ExitCode.ABORTED),
    (DIMSEError("x"), ExitCode.ABORTED),
    (CommandSetError("x"), ExitCode.ABORTED),  # defined in dimse/: the nearest listed base decides
    (errors.InputError("x"), ExitCode.INPUT),
    (errors.ConnectError("x"), ExitCode.CONNECT),
    (errors.AssociationRejected(1, 1, 3), ExitCode.REJECTED),
    (errors.NoAcceptedContext("x"), ExitCode.REJECTED),
    (errors.AssociationAborted("x"), ExitCode.ABORTED),
    (errors.TimeoutExpired("x"), ExitCode.ABORTED),
    (errors.PDUDecodeError("x"), ExitCode.ABORTED),
    (errors.LocalProtocolError("x"), ExitCode.ABORTED),
    (DcmnetError("x"), ExitCode.INTERNAL),
    (ValueError("x"), ExitCode.INTERNAL),
    (KeyboardInterrupt(), ExitCode.INTERRUPTED),
])
def test_for_error(error: BaseException, code: ExitCode) -> None:
    assert for_error(error) is code


def test_command_set_errors_are_the_peers() -> None:
    assert issubclass(CommandSetError, RemoteDIMSEError)


# ------------------------------------------------------------------------- the CLI, no peer needed

def _run(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    _out, err = capsys.readouterr()
    return done.value.code, err


@pytest.mark.parametrize("command", [("find",), ("move", "--dest", "NOWHERE"), ("get", "-od", "unused")])
def test_bad_key_exits_2_before_connecting(capsys, tmp_path, command) -> None:
    """Nothing listens on the port: a connection attempt would exit 4, so 2 proves none was made."""
    if command[0] == "get":
        command = ("get", "-od", str(tmp_path / "in"))
    code, err = _run(capsys, *command, "-aec", "QRSCP", LOOPBACK, str(free_port()), "-k", "Rows=70000")
    assert code == ExitCode.USAGE, err
    assert "Rows" in err and "0..65535" in err and "Traceback" not in err


def test_unencodable_query_file_exits_2_in_one_line(capsys, tmp_path) -> None:
    query = tmp_path / "query.json"
    query.write_text('{"00280010": {"vr": "US", "Value": [70000]}}')
    code, err = _run(capsys, "find", "-aec", "QRSCP", LOOPBACK, str(free_port()), "-f", str(query))
    assert code == ExitCode.USAGE, err
    assert len([line for line in err.splitlines() if "(0028,0010) Rows" in line]) == 1
    assert "Traceback" not in err and "Warning" not in err


# ------------------------------------------------------------------------------- against dcmqrscp

@pytest.fixture(scope="module")
def archive(tmp_path_factory, dcmtk):
    if not shutil.which("dcmqrscp"):
        pytest.skip("DCMTK dcmqrscp not found on PATH")
    with dcmqrscp_server(tmp_path_factory.mktemp("qrkeys"), make_datasets()) as (port, aet):
        yield port, aet


@pytest.mark.parametrize("command", [("find",), ("move", "--dest", "NOWHERE")])
def test_bad_key_against_dcmqrscp_exits_2(capsys, archive, command) -> None:
    port, aet = archive
    code, err = _run(capsys, *command, "-aec", aet, LOOPBACK, str(port), "-k", "PatientID=PAT001", "-k", "Rows=70000")
    assert code == ExitCode.USAGE, err
    assert "Rows" in err and "0..65535" in err
    assert "Traceback" not in err and "internal error" not in err
    assert len([line for line in err.splitlines() if "Rows" in line]) == 1


def test_unencodable_identifier_on_an_open_association_is_local(archive) -> None:
    """An identifier that skipped the checks (built by a caller, not from -k) fails while encoding on the
    association: a LocalDIMSEError (exit 3) from both find and move, never 6 or 70."""
    from dcmnet_cli.services.scu.find import find
    from dcmnet_cli.services.scu.retrieve import MOVE, retrieve
    from dcmnet_cli.services.scu.retrieve_requests import request_for_dataset

    port, aet = archive
    ds = _rows_70000()
    ds.QueryRetrieveLevel = "STUDY"
    model = MODELS["study"]
    with pytest.raises(LocalDIMSEError) as info:
        find(Peer(LOOPBACK, port, aet), QuerySpec(model, "STUDY", ds))
    assert for_error(info.value) is ExitCode.INPUT
    result = retrieve(MOVE, Peer(LOOPBACK, port, aet), "DCMNET", model.move, [request_for_dataset(ds, "STUDY")],
                      destination="NOWHERE")
    error = result.operations[0].error  # each request is its own operation (the others still run)
    assert isinstance(error, LocalDIMSEError) and not isinstance(error, RemoteDIMSEError)
    assert for_error(error) is ExitCode.INPUT
