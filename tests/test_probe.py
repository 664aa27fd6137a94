"""``dcmnet probe`` against real peers on 127.0.0.1: DCMTK storescp (with and without +xa), dcmqrscp and
``dcmnet listen``; the expected tables, the rejection causes and fixes, --json, and that nothing is ever
stored."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from dcmnet_cli.cli.main import main
from helpers.procs import LOOPBACK, base_env, dcmnet_argv, free_port, listen_server, run_dcmnet, run_on_pty

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
VERIFICATION = "1.2.840.10008.1.1"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
EXPLICIT, IMPLICIT, DEFLATE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99"
JPEG_BASELINE, J2K_LOSSLESS, RLE = "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5"
QR_CLASSES = {f"1.2.840.10008.5.1.4.1.2.{model}.{service}" for model in (1, 2, 3) for service in (1, 2, 3)}


def probe(capsys, port: int, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(["probe", LOOPBACK, str(port), *args])
    out, err = capsys.readouterr()
    return int(done.value.code), out, err


def probe_json(capsys, port: int, *args: str) -> tuple[int, dict, str]:
    code, out, err = probe(capsys, port, "--json", *args)
    lines = out.splitlines()
    assert len(lines) == 1, out
    return code, json.loads(lines[0]), err


def classes(report: dict) -> dict[str, dict]:
    return {entry["uid"]: entry for entry in report["sop_classes"]}


def accepted(report: dict) -> dict[str, list[str]]:
    return {entry["uid"]: entry["accepted"] for entry in report["sop_classes"] if entry["accepted"]}


@pytest.fixture(autouse=True)
def _dcmtk_env(monkeypatch):
    monkeypatch.setenv("DCMNET_CONFIG", str(Path("/nonexistent/dcmnet-probe-tests.toml")))


# --------------------------------------------------------------------------- DCMTK storescp


def test_storescp_without_compression_accepts_uncompressed_only(capsys, storescp) -> None:
    port, folder = storescp()
    code, report, err = probe_json(capsys, port)
    assert code == 0, err
    found = accepted(report)
    assert found[CT] == [EXPLICIT, IMPLICIT]
    assert found[MR] == [EXPLICIT, IMPLICIT]
    assert found[VERIFICATION] == [EXPLICIT, IMPLICIT]
    ct = classes(report)[CT]
    assert ct["refused"][JPEG_BASELINE] == "transfer syntaxes not supported"
    assert ct["scp_role"] == "no answer"
    assert classes(report)[STUDY_FIND]["refused"] == {s: "abstract syntax not supported" for s in (EXPLICIT, IMPLICIT, DEFLATE)}
    assert not QR_CLASSES & set(found)
    assert report["implementation_version_name"].startswith("OFFIS_DCMTK")
    assert report["echo"]["status"] == "0x0000" and report["status"] == "0x0000"
    assert report["associations"] >= 2 and report["rejection"] is None
    assert list(folder.iterdir()) == []  # nothing stored


def test_storescp_with_compression_accepts_the_compressed_syntaxes(capsys, storescp) -> None:
    port, folder = storescp("+xa")
    code, report, err = probe_json(capsys, port, "--sop-class", "CTImageStorage", "--sop-class", "Verification")
    assert code == 0, err
    found = accepted(report)
    assert {EXPLICIT, IMPLICIT, DEFLATE, JPEG_BASELINE, J2K_LOSSLESS, RLE} <= set(found[CT])
    assert set(found) == {CT, VERIFICATION}
    assert report["associations"] == 1  # narrowed: one context per (class, syntax), one association
    assert list(folder.iterdir()) == []


def test_storescp_plain_report(capsys, storescp) -> None:
    """Not a terminal: plain lines, classes grouped by family, only the accepted ones."""
    port, _folder = storescp()
    code, out, err = probe(capsys, port)
    assert code == 0, err
    lines = out.splitlines()
    assert "CT Image Storage (1.2.840.10008.5.1.4.1.1.2): ExplicitVRLittleEndian, ImplicitVRLittleEndian; " \
           "SCP role: no answer (SCU only)" in [line.strip() for line in lines]
    assert lines.index("Verification") < lines.index("Storage")
    assert "Query/Retrieve" not in lines  # nothing accepted there: listed only with --all
    assert any(line.startswith("implementation: 1.2.276.0.7230010.3") for line in lines)
    assert any(line.startswith("C-ECHO: success (0x0000)") for line in lines)
    assert "--all lists the" in lines[-1]
    code, out, _err = probe(capsys, port, "--all", "--sop-class", STUDY_FIND, "--sop-class", CT)
    assert code == 0
    assert f"  Study Root Query/Retrieve Information Model - FIND ({STUDY_FIND}): refused: abstract syntax not supported" in out
    assert "JPEGBaseline8Bit" in out and "(transfer syntaxes not supported)" in out


def test_storescp_refusing_every_association(capsys, storescp) -> None:
    port, _folder = storescp("--refuse")
    code, out, err = probe(capsys, port)
    assert code == 5
    assert out == ""
    assert "association rejected: permanent rejection by the service user: no reason given" in err
    assert "likely fix:" in err


# --------------------------------------------------------------------------- DCMTK dcmqrscp


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    if not shutil.which("dcmqrscp"):
        message = "DCMTK dcmqrscp not found on PATH"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    from qr_helpers import dcmqrscp_server

    with dcmqrscp_server(tmp_path_factory.mktemp("qr"), []) as (port, aet):
        yield port, aet


def test_dcmqrscp_accepts_query_retrieve(capsys, archive) -> None:
    port, aet = archive
    code, report, err = probe_json(capsys, port, "-aec", aet)
    assert code == 0, err
    found = accepted(report)
    assert QR_CLASSES <= set(found)  # FIND, MOVE and GET of the patient root, study root, patient/study only models
    assert found[STUDY_FIND] == [EXPLICIT, IMPLICIT]
    assert found[CT] == [EXPLICIT, IMPLICIT]
    assert classes(report)[CT]["scp_role"] == "granted"  # dcmqrscp sends C-GET sub-operations: it grants the role
    assert "1.2.840.10008.5.1.4.31" not in found  # no worklist
    assert report["implementation_version_name"].startswith("OFFIS_DCMTK")


def test_dcmqrscp_wrong_called_ae(capsys, archive) -> None:
    port, _aet = archive
    code, report, err = probe_json(capsys, port, "-aec", "NOT-THE-AE")
    assert code == 5
    assert report["rejection"]["cause"].endswith("called AE title not recognised")
    assert "-aec" in report["rejection"]["fix"]
    assert report["associations"] == 0 and report["exit_code"] == 5
    assert "called AE title not recognised" in err


# --------------------------------------------------------------------------- dcmnet listen


def test_listen_accepts_every_storage_syntax_and_stores_nothing(capsys, tmp_path) -> None:
    folder = tmp_path / "in"
    port = free_port()
    with listen_server("-od", str(folder), "--max-associations", "1", port=port) as server:
        code, report, err = probe_json(capsys, port)
        assert server.alive()
    assert code == 0, err
    found = accepted(report)
    from dcmnet_cli.part10.sopclasses import STORAGE_SOP_CLASSES
    from dcmnet_cli.services.scu.probe_plan import STORAGE_SYNTAXES

    assert set(found) >= set(STORAGE_SOP_CLASSES) | {VERIFICATION}  # and Q/R, worklist... as listen grows
    assert found[CT] == list(STORAGE_SYNTAXES)
    assert found[VERIFICATION] == [EXPLICIT, IMPLICIT]
    assert classes(report)[CT]["scp_role"] in ("granted", "refused")  # listen answers role selection (C-GET SCP or not)
    assert report["implementation_version_name"].startswith("DCMNET")
    assert report["echo"]["status"] == "0x0000"
    stored = [p for p in folder.rglob("*") if not p.name.startswith(".dcmnet-index")]  # listen's own index
    assert stored == []  # nothing stored


def test_listen_verify_only(capsys) -> None:
    port = free_port()
    with listen_server("--verify-only", port=port):
        code, report, err = probe_json(capsys, port)
    assert code == 0, err
    assert accepted(report) == {VERIFICATION: [EXPLICIT, IMPLICIT]}
    assert classes(report)[CT]["refused"][EXPLICIT] == "abstract syntax not supported"


def test_listen_required_called_ae(capsys) -> None:
    port = free_port()
    with listen_server("-aet", "LISTENER", "--require-called-aet", port=port):
        code, out, err = probe(capsys, port, "-aec", "WRONG")
        assert code == 5 and out == ""
        assert "called AE title not recognised (likely fix: the peer expects another -aec)" in err
        code, _out, err = probe(capsys, port, "-aec", "LISTENER", "--sop-class", "Verification")
        assert code == 0, err


def test_listen_allowed_calling_aes(capsys) -> None:
    port = free_port()
    with listen_server("--allow-calling-aet", "FRIEND", port=port):
        code, report, err = probe_json(capsys, port, "-aet", "STRANGER")
        assert code == 5
        assert report["rejection"] == {"result": 1, "source": 1, "reason": 3,
                                       "cause": "permanent rejection by the service user: calling AE title not recognised",
                                       "fix": "the peer does not know us: use an -aet it is configured for"}
        assert "calling AE title not recognised" in err
        code, _report, err = probe_json(capsys, port, "-aet", "FRIEND", "--sop-class", "Verification")
        assert code == 0, err


def test_listen_association_limit_held_by_another(capsys) -> None:
    """The only association slot is taken: the probe retries (a slot may be freed a moment after a release),
    then says the peer has too many associations."""
    from dcmnet_cli.services.peer import Peer
    from dcmnet_cli.services.scu.association import associate
    from dcmnet_cli.transport.client import Timeouts, release
    from dcmnet_cli.ul.negotiation import build_contexts

    port = free_port()
    with listen_server("--max-associations", "1", port=port):
        holder = associate(Peer(LOOPBACK, port), "HOLDER", build_contexts([(VERIFICATION, (IMPLICIT,))]), Timeouts())
        try:
            code, report, err = probe_json(capsys, port, "--sop-class", "Verification", "-v")
        finally:
            release(holder.driver, 5.0)
        assert code == 5
        assert report["rejection"]["cause"] == "transient rejection by the service provider (presentation): local limit exceeded"
        assert "too many associations" in report["rejection"]["fix"]
        assert err.count("retrying in") == 3
        code, _report, err = probe_json(capsys, port, "--sop-class", "Verification")
        assert code == 0, err


# --------------------------------------------------------------------------- options, output, errors


def test_json_shape(capsys) -> None:
    port = free_port()
    with listen_server(port=port):
        code, report, _err = probe_json(capsys, port, "--sop-class", "CTImageStorage", "--transfer-syntax",
                                        "ExplicitVRLittleEndian", "--transfer-syntax", J2K_LOSSLESS)
    assert code == 0
    for key in ("peer", "called_ae", "calling_ae", "status", "implementation_class_uid", "implementation_version_name",
                "max_pdu", "async_operations_window", "associate_ms", "associations", "echo",
                "rejection", "sop_classes", "elapsed_s", "exit_code"):
        assert key in report, key
    assert "identity" not in report  # none proposed
    assert report["echo"] is None and report["status"] is None  # Verification was not probed
    assert isinstance(report["max_pdu"], int) and report["associate_ms"] > 0
    (entry,) = report["sop_classes"]
    assert entry["scp_role"] in ("granted", "refused")
    assert entry == {"uid": CT, "name": "CT Image Storage", "family": "Storage", "accepted": [EXPLICIT, J2K_LOSSLESS],
                     "refused": {}, "scp_role": entry["scp_role"], "extended_negotiation": None}


def test_bad_options_are_usage_errors(capsys) -> None:
    code, _out, err = probe(capsys, 104, "--sop-class", "NoSuchClass")
    assert code == 2 and "NoSuchClass" in err
    code, _out, err = probe(capsys, 104, "--transfer-syntax", "NoSuchSyntax")
    assert code == 2 and "NoSuchSyntax" in err


def test_nothing_listening_is_a_connect_error(capsys) -> None:
    code, report, err = probe_json(capsys, free_port())
    assert code == 4 and report["exit_code"] == 4
    assert "connection refused" in report["error"] and "connection refused" in err


def test_terminal_table(tmp_path) -> None:
    port = free_port()
    with listen_server("--verify-only", port=port):
        code, out, err = run_on_pty(dcmnet_argv("probe", LOOPBACK, str(port), "--all", "--sop-class", "Verification",
                                                "--sop-class", "CTImageStorage"), base_env(), columns=160)
    assert code == 0, err
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)  # bold headings
    assert "┃ SOP class" in out and "┃ Accepted transfer syntaxes" in out
    assert "Verification SOP Class" in out and "ImplicitVRLittleEndian" in out
    assert "Storage" in out and "abstract syntax not supported" in out
    assert "1 of 2 SOP classes accepted" in out


def test_probe_help_lists_its_options() -> None:
    code, out, _err = run_dcmnet("probe", "--help")
    assert code == 0
    for option in ("--sop-class", "--transfer-syntax", "--all", "--json", "-aec", "--tls"):
        assert option in out
    assert "Probe options" in out


# --------------------------------------------------------------------------- user identity


@pytest.fixture
def users_file(tmp_path) -> Path:
    path = tmp_path / "users.txt"
    import subprocess

    done = subprocess.run(dcmnet_argv("users", "add", str(path), "alice"), input="pr0be-s3cret\n", text=True,
                          capture_output=True, env=base_env(), timeout=30)
    assert done.returncode == 0, done.stderr
    return path


def test_identity_confirmed_and_refused(capsys, monkeypatch, users_file) -> None:
    """The identity goes on every association; the peer's answer is in the report; a refusal says why,
    and the password appears in no output."""
    port = free_port()
    monkeypatch.setenv("PROBE_PW", "pr0be-s3cret")
    monkeypatch.setenv("PROBE_BAD_PW", "wr0ng-s3cret")
    with listen_server("--users", str(users_file), "--verify-only", port=port):
        code, out, err = probe(capsys, port, "--user", "alice", "--password-env", "PROBE_PW", "--identity-response")
        assert code == 0, err
        assert "user identity: username and passcode" in out or "user identity:" in out
        assert "confirmed" in out
        code, report, err = probe_json(capsys, port, "--user", "alice", "--password-env", "PROBE_PW",
                                       "--identity-response", "--sop-class", "Verification")
        assert code == 0, err
        assert report["identity"]["user"] == "alice" and report["identity"]["confirmed"] is True
        code, report, err = probe_json(capsys, port, "--user", "alice", "--password-env", "PROBE_BAD_PW", "-v")
        assert code == 5
        assert report["associations"] == 0
        assert "we sent a user identity" in report["rejection"]["fix"] and "we sent a user identity" in err
        assert err.count("rejected") <= 2  # stopped at the first rejection, not one per batch
        for text in (json.dumps(report), err):
            assert "s3cret" not in text
