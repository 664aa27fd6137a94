"""TLS (DICOM PS3.15 Annex B secure transport), scenarios I.50 and I.51: against DCMTK's ``+tls`` and
``dcmnet listen --tls``, with a throw-away CA made by the ``openssl`` CLI. Every peer is on 127.0.0.1.

Plain DICOM to a TLS port exits 6, not 4: the TCP connection is set up, the A-ASSOCIATE-RQ is sent, and
the TLS server closes the connection on bytes that are not TLS. A plain client cannot tell that from any
peer dropping the connection during association set-up (exit 6 in the contract); the message hints at
--tls. TLS to a plain port fails inside our handshake (the peer answers A-ABORT bytes, not a TLS record),
so that one is exit 4.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers.procs import (
    LOOPBACK,
    base_env,
    dcmnet_argv,
    free_port,
    listen_server,
    run_dcmnet,
    run_tool,
)
from store_helpers import assert_same, make_file, received, storescp_argv

ROOT = Path(__file__).resolve().parent.parent
QUICK = 5.0
"""Seconds a clean failure may take at most (handshake timeouts are 1-2 s below)."""


# --------------------------------------------------------------------------- certificates


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}"


def _key_and_csr(name: str, subject: str, cwd: Path) -> None:
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=cwd)


def _sign(name: str, ca: str, extensions: str, cwd: Path) -> None:
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=cwd)


def _self_signed_ca(name: str, subject: str, cwd: Path) -> None:
    _openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", subject,
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=cwd)


class Certs:
    def __init__(self, folder: Path) -> None:
        self.dir = folder
        for name in ("ca", "server", "client", "other_ca", "stranger", "server_enc"):
            setattr(self, name, str(folder / f"{name}.crt"))
            setattr(self, f"{name}_key", str(folder / f"{name}.key"))

    def listen_args(self, *extra: str) -> tuple[str, ...]:
        return ("--tls", "--tls-cert", self.server, "--tls-key", self.server_key, *extra)

    def client_args(self) -> tuple[str, ...]:
        return ("--tls-cert", self.client, "--tls-key", self.client_key)


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Certs:
    """A test CA, a server certificate (IP:127.0.0.1, DNS:localhost), a client certificate, and a
    stranger signed by another CA; EC P-256 keys (fast). The openssl CLI missing fails under CI=true."""
    if shutil.which("openssl") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("the openssl CLI is not on PATH")
        pytest.skip("the openssl CLI is not on PATH")
    folder = tmp_path_factory.mktemp("tls")
    _self_signed_ca("ca", "/CN=dcmnet test CA", folder)
    _self_signed_ca("other_ca", "/CN=another CA", folder)
    for name in ("server", "client", "stranger"):
        _key_and_csr(name, f"/CN=dcmnet test {name}", folder)
    _sign("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                          "extendedKeyUsage=serverAuth\n", folder)
    _sign("client", "ca", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n", folder)
    _sign("stranger", "other_ca", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n", folder)
    shutil.copy(folder / "server.crt", folder / "server_enc.crt")
    _openssl("ec", "-in", "server.key", "-aes256", "-passout", "pass:s3cret", "-out", "server_enc.key", cwd=folder)
    return Certs(folder)


# --------------------------------------------------------------------------- helpers


def no_traceback(err: str) -> None:
    assert "Traceback" not in err and "internal error" not in err, err


def timed(*args: str, env: dict[str, str] | None = None, timeout: float = 20.0) -> tuple[int, str, str, float]:
    started = time.monotonic()
    if env is None:
        code, out, err = run_dcmnet(*args, timeout=timeout)
    else:
        done = subprocess.run(dcmnet_argv(*args), capture_output=True, text=True, timeout=timeout,
                              env={**base_env(), **env}, stdin=subprocess.DEVNULL)
        code, out, err = done.returncode, done.stdout, done.stderr
    return code, out, err, time.monotonic() - started


def tls_listen(certs: Certs, *extra: str, artim: str = "2"):
    return listen_server(*certs.listen_args(*extra), "--artim-timeout", artim)


def echo_ok(port: int, certs: Certs, *extra: str) -> str:
    code, out, err = run_dcmnet("-v", "echo", "--tls", "--tls-ca", certs.ca, *extra, LOOPBACK, str(port))
    assert code == 0, err
    return err


# --------------------------------------------------------------------------- against DCMTK


def test_echo_to_storescp_tls(certs: Certs, dcmtk, start_server) -> None:
    """Server-authenticated TLS (storescp -ic: no client certificate asked); TLS 1.3 when both can."""
    port = free_port()
    start_server([dcmtk["storescp"], "+tls", certs.server_key, certs.server, "-ic", "--ignore", str(port)], port, dcmtk=True)
    err = echo_ok(port, certs)
    assert "over TLSv1.3" in err, err  # 1.3 preferred: both sides offer it, so it is what is used
    code, _, err = run_dcmnet("echo", "--tls", "--tls-ca", certs.ca, "localhost", str(port))  # DNS SAN
    assert code == 0, err


def test_store_to_storescp_tls_with_client_certificate(certs: Certs, dcmtk, start_server, tmp_path: Path) -> None:
    """storescp requires and verifies our client certificate (-rc +cf CA); the files arrive byte-identical
    (a 2 MiB one too: the TLS send path batches and reads file regions instead of sendfile)."""
    port = free_port()
    out = tmp_path / "received"
    out.mkdir()
    argv = storescp_argv(port, out, "+tls", certs.server_key, certs.server, "-rc", "+cf", certs.ca)
    start_server([dcmtk["storescp"], *argv[1:]], port, dcmtk=True)
    small = make_file(tmp_path / "src", "tls-small")
    big = make_file(tmp_path / "src", "tls-big", rows=256, columns=256, frames=16)
    code, _, err = run_dcmnet("store", "--tls", "--tls-ca", certs.ca, *certs.client_args(), LOOPBACK, str(port),
                              str(small), str(big))
    assert code == 0, err
    got = received(out)
    assert len(got) == 2
    for source in (small, big):
        from dcmnet_cli.services.dicomfiles import read_meta

        assert_same(source, got[read_meta(source).sop_instance_uid])


def test_store_to_storescp_tls_without_client_certificate_fails_cleanly(certs: Certs, dcmtk, start_server,
                                                                       tmp_path: Path) -> None:
    port = free_port()
    start_server([dcmtk["storescp"], "+tls", certs.server_key, certs.server, "-rc", "+cf", certs.ca, "--ignore",
                  str(port)], port, dcmtk=True)
    code, _, err, took = timed("echo", "--tls", "--tls-ca", certs.ca, LOOPBACK, str(port))
    assert code == 4, err
    no_traceback(err)
    assert "client certificate" in err and took < QUICK, (err, took)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_QUICKACK and the counter are Linux's")
def test_storescu_tls_with_nagle_into_listen(certs: Certs, tmp_path: Path) -> None:
    """DCMTK run its default way (Nagle on) over TLS: listen acknowledges each record at once, as over
    plain TCP (tests/test_nagle_peers.py), so no object waits for a delayed ACK."""
    from helpers.socket_checks import delayed_acks
    from storage_helpers import require_tool

    storescu = require_tool("storescu")
    files = [make_file(tmp_path / "in", f"n{n}") for n in range(40)]
    with tls_listen(certs, "-od", str(tmp_path / "out"), "--no-fsync") as server:
        before = delayed_acks()
        code, out, err = run_tool([storescu, "+tls", certs.client_key, certs.client, "+cf", certs.ca,
                                   LOOPBACK, str(server.port), *map(str, files)], timeout=60, nagle=True)
        late = delayed_acks() - before
    assert code == 0, out + err
    assert len(received(tmp_path / "out")) == 40
    assert late <= 10, f"{late} delayed ACKs for 40 objects from a Nagle sender over TLS"


def test_echoscu_tls_to_listen_requiring_client_certificates(certs: Certs, dcmtk) -> None:
    with tls_listen(certs, "--tls-ca", certs.ca, "--tls-require-client-cert") as server:
        code, out, err = run_tool([dcmtk["echoscu"], "+tls", certs.client_key, certs.client, "+cf", certs.ca,
                                   LOOPBACK, str(server.port)])
        assert code == 0, out + err
        assert server.wait_for_stderr("client certificate commonName=dcmnet test client")
        mark = server.mark()
        started = time.monotonic()
        code, out, err = run_tool([dcmtk["echoscu"], "+tls", certs.stranger_key, certs.stranger, "+cf", certs.ca,
                                   LOOPBACK, str(server.port)])
        assert code != 0 and time.monotonic() - started < QUICK, out + err
        assert server.wait_for_stderr("tls-error", since=mark)
        # no client certificate at all (echoscu +tls always sends one, so this side is dcmnet's)
        mark = server.mark()
        code, _, err, took = timed("echo", "--tls", "--tls-ca", certs.ca, LOOPBACK, str(server.port))
        assert code == 4 and took < QUICK, err
        no_traceback(err)
        assert "client certificate" in err, err
        assert server.wait_for_stderr("tls-error: TLS handshake failed: peer did not return a certificate", since=mark)
        echo_ok(server.port, certs, *certs.client_args())
        assert server.alive()


def test_tls_files_through_process_substitution(certs: Certs) -> None:
    """``--tls-ca <(...) --tls-cert <(...) --tls-key <(...)``, as a shell user passes secrets kept out of
    files: pipes, which OpenSSL cannot open by name after we read them; the handshake still verifies both ways."""
    import shlex

    with tls_listen(certs, "--tls-ca", certs.ca, "--tls-require-client-cert") as server:
        argv = dcmnet_argv("-v", "echo", "--tls", LOOPBACK, str(server.port))
        piped = " ".join(f"{option} <(cat {shlex.quote(path)})" for option, path in
                         (("--tls-ca", certs.ca), ("--tls-cert", certs.client), ("--tls-key", certs.client_key)))
        done = subprocess.run(["bash", "-c", f"{shlex.join(argv)} {piped}"], capture_output=True, text=True,
                              timeout=20, env=base_env(), stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        assert server.wait_for_stderr("client certificate commonName=dcmnet test client")


def peer_max_pdu(err: str) -> int:
    return int(err.split("peer max PDU ", 1)[1].split(",", 1)[0])


def test_listen_advertises_large_pdus_on_plain_tcp_and_128_kib_over_tls(certs: Certs) -> None:
    """4 MiB lets big objects take the splice path (transport/bulk.py); over TLS nothing is spliced and large
    PDUs only cost, so 131056 there, unless --max-pdu says otherwise."""
    with listen_server("--ignore") as server:
        code, _, err = run_dcmnet("--debug", "echo", LOOPBACK, str(server.port))
        assert code == 0 and peer_max_pdu(err) == 4194304, err
    for extra, expected in (((), 131056), (("--max-pdu", "4194304"), 4194304)):
        with tls_listen(certs, "--ignore", *extra) as server:
            code, _, err = run_dcmnet("--debug", "echo", "--tls", "--tls-ca", certs.ca, LOOPBACK, str(server.port))
            assert code == 0 and peer_max_pdu(err) == expected, err


def test_plain_storescp_refuses_tls_echo_quickly(certs: Certs, dcmtk, start_server) -> None:
    port = free_port()
    start_server([dcmtk["storescp"], "--ignore", str(port)], port, dcmtk=True)
    code, _, err, took = timed("echo", "--tls", "--tls-ca", certs.ca, "--connect-timeout", "2", LOOPBACK, str(port))
    assert code == 4 and took < QUICK, (err, took)
    no_traceback(err)
    assert f"TLS handshake with {LOOPBACK}:{port} failed" in err, err


# --------------------------------------------------------------------------- against dcmnet listen --tls


def test_echo_to_listen_tls_and_verification(certs: Certs) -> None:
    with tls_listen(certs) as server:
        err = echo_ok(server.port, certs)
        assert "over TLSv1.3" in err, err
        assert server.wait_for_stderr("tls: TLSv1.3")

        # a CA that did not sign the server's certificate: exit 4, the cause and the fix in one line
        code, _, err, took = timed("echo", "--tls", "--tls-ca", certs.other_ca, LOOPBACK, str(server.port))
        assert code == 4 and took < QUICK, err
        no_traceback(err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines == [f"dcmnet echo: error: TLS handshake with {LOOPBACK}:{server.port} failed: certificate "
                         "verify failed: self-signed certificate in certificate chain "
                         "(use --tls-ca FILE, or --tls-no-verify)"] or (
            len(lines) == 1 and "certificate verify failed" in lines[0] and "--tls-ca FILE" in lines[0]), lines

        # default trust store: our test CA is not in it
        code, _, err = run_dcmnet("echo", "--tls", LOOPBACK, str(server.port))
        assert code == 4 and "certificate verify failed" in err and "--tls-no-verify" in err, err

        # a name the certificate does not carry
        code, _, err = run_dcmnet("echo", "--tls", "--tls-ca", certs.ca, "--tls-server-name", "elsewhere.example",
                                  LOOPBACK, str(server.port))
        assert code == 4 and "elsewhere.example" in err and "--tls-server-name" in err, err

        # the explicit opt-out: works, with a warning
        code, out, err = run_dcmnet("echo", "--tls", "--tls-no-verify", LOOPBACK, str(server.port))
        assert code == 0, err
        assert "warning: --tls-no-verify" in err and "Success" in out, (out, err)
        assert server.alive()


def test_store_to_listen_tls_byte_identical(certs: Certs, tmp_path: Path) -> None:
    out = tmp_path / "in"
    source = make_file(tmp_path / "src", "tls-listen", rows=256, columns=256, frames=8)
    with tls_listen(certs, "-od", str(out)) as server:
        code, _, err = run_dcmnet("store", "--tls", "--tls-ca", certs.ca, LOOPBACK, str(server.port), str(source))
        assert code == 0, err
    got = list(received(out).values())
    assert len(got) == 1
    assert_same(source, got[0])


def test_tls_below_1_2_is_refused(certs: Certs) -> None:
    """A raw client that offers at most TLS 1.1 gets a protocol_version alert; listen logs and stays up."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    try:
        client.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 allows TLS < 1.2 only at security level 0
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            client.minimum_version = ssl.TLSVersion.TLSv1
            client.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ssl.SSLError, ValueError) as error:
        pytest.skip(f"the local OpenSSL cannot offer TLS 1.1: {error}")
    with tls_listen(certs) as server:
        mark = server.mark()
        with socket.create_connection((LOOPBACK, server.port), timeout=QUICK) as raw:
            try:
                client.wrap_socket(raw).close()
            except ssl.SSLError as error:
                if "NO_PROTOCOLS_AVAILABLE" in str(error.reason) or "NO_CIPHERS" in str(error.reason):
                    pytest.skip(f"the local OpenSSL cannot offer TLS 1.1: {error}")
                assert "PROTOCOL_VERSION" in str(error.reason) or "UNSUPPORTED" in str(error.reason), error
            else:
                pytest.fail("a TLS 1.1 handshake succeeded")
        assert server.wait_for_stderr("tls-error: TLS handshake failed: unsupported protocol", since=mark)
        echo_ok(server.port, certs)


def test_plain_echo_to_tls_listen_fails_quickly_and_server_survives(certs: Certs) -> None:
    with tls_listen(certs) as server:
        mark = server.mark()
        code, _, err, took = timed("echo", LOOPBACK, str(server.port))
        assert code == 6 and took < QUICK, (err, took)
        no_traceback(err)
        assert "add --tls" in err, err
        assert server.wait_for_stderr("tls-error", since=mark)
        echo_ok(server.port, certs)


def test_tls_echo_to_plain_listen_exits_4_quickly() -> None:
    with listen_server("--artim-timeout", "2") as server:
        code, _, err, took = timed("echo", "--tls", "--tls-no-verify", LOOPBACK, str(server.port))
        assert code == 4 and took < QUICK, (err, took)
        no_traceback(err)
        assert "does not speak TLS" in err, err
        code, _, err = run_dcmnet("echo", LOOPBACK, str(server.port))
        assert code == 0, err


def test_tls_echo_to_a_silent_peer_times_out_within_connect_timeout() -> None:
    """A peer that accepts TCP and never answers the ClientHello: exit 4 after --connect-timeout."""
    with socket.socket() as silent:
        silent.bind((LOOPBACK, 0))
        silent.listen(1)
        code, _, err, took = timed("echo", "--tls", "--tls-no-verify", "--connect-timeout", "1", LOOPBACK,
                                   str(silent.getsockname()[1]))
    assert code == 4 and 0.9 < took < QUICK, (err, took)
    assert "timed out after 1 s" in err, err


def test_listen_tls_keeps_serving_after_garbage_and_silent_connections(certs: Certs) -> None:
    """The accept loop never waits on a handshake: a silent connection holds only its worker (closed by
    ARTIM), garbage is one tls-error line, and TLS echoes go through meanwhile."""
    with tls_listen(certs, artim="1") as server:
        mark = server.mark()
        silent = socket.create_connection((LOOPBACK, server.port), timeout=QUICK)
        try:
            with socket.create_connection((LOOPBACK, server.port), timeout=QUICK) as garbage:
                garbage.sendall(b"GET / HTTP/1.0\r\n\r\n" + bytes(range(256)))
                try:
                    while garbage.recv(4096):  # whatever alert comes, then the close (bounded by the timeout)
                        pass
                except ConnectionResetError:
                    pass
            started = time.monotonic()
            echo_ok(server.port, certs)  # while the silent handshake is pending
            assert time.monotonic() - started < QUICK
            assert silent.recv(1) == b""  # closed by ARTIM (1 s), within the 5 s socket timeout
        finally:
            silent.close()
        assert server.wait_for_stderr("TLS handshake timed out after 1 s", since=mark)
        echo_ok(server.port, certs)
        assert server.alive()
        assert "Traceback" not in server.stderr()


def test_encrypted_key_password_from_the_environment(certs: Certs) -> None:
    port = free_port()
    argv = dcmnet_argv("listen", "--bind", LOOPBACK, "--tls", "--tls-cert", certs.server_enc, "--tls-key",
                       certs.server_enc_key, "--tls-key-password-env", "TEST_KEY_PASSWORD", str(port))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20, env=base_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "TEST_KEY_PASSWORD" in done.stderr and "not set" in done.stderr, done.stderr
    no_traceback(done.stderr)
    # no password at all: an error, never an OpenSSL prompt on the terminal
    argv_nopw = [a for a in argv if a not in ("--tls-key-password-env", "TEST_KEY_PASSWORD")]
    done = subprocess.run(argv_nopw, capture_output=True, text=True, timeout=20, env=base_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "encrypted" in done.stderr, done.stderr
    from helpers.procs import running_server

    env_before = os.environ.get("TEST_KEY_PASSWORD")
    os.environ["TEST_KEY_PASSWORD"] = "s3cret"  # running_server passes os.environ on
    try:
        with running_server(dcmnet_argv("listen", "--bind", LOOPBACK, "--tls", "--tls-cert", certs.server_enc,
                                        "--tls-key", certs.server_enc_key, "--tls-key-password-env",
                                        "TEST_KEY_PASSWORD", str(port)), port) as server:
            echo_ok(server.port, certs)
    finally:
        if env_before is None:
            os.environ.pop("TEST_KEY_PASSWORD", None)
        else:
            os.environ["TEST_KEY_PASSWORD"] = env_before


def test_environment_and_config_node_settings(certs: Certs, tmp_path: Path) -> None:
    with tls_listen(certs) as server:
        code, _, err, _ = timed("echo", LOOPBACK, str(server.port),
                                env={"DCMNET_TLS": "1", "DCMNET_TLS_CA": certs.ca})
        assert code == 0, err
        config = tmp_path / "config.toml"
        config.write_text(textwrap.dedent(f"""
            [nodes.secure]
            host = "{LOOPBACK}"
            port = {server.port}
            tls = true
            tls_ca = "{Path(certs.ca).name}"
        """))
        shutil.copy(certs.ca, tmp_path / Path(certs.ca).name)  # relative to the config file's folder
        code, _, err, _ = timed("echo", "secure", env={"DCMNET_CONFIG": str(config)})
        assert code == 0, err
        code, _, err, _ = timed("echo", "--no-tls", "secure", env={"DCMNET_CONFIG": str(config)})
        assert code == 6, err  # the command line wins over the node


USAGE_ERRORS = [
    (["echo", "--tls-ca", "{ca}", LOOPBACK, "104"], "--tls-ca needs --tls"),
    (["echo", "--tls", "--tls-ca", "{missing}", LOOPBACK, "104"], "missing.crt"),
    (["echo", "--tls", "--tls-cert", "{client}", "--tls-key", "{server_key}", LOOPBACK, "104"], "does not belong"),
    (["listen", "--tls", "0"], "--tls-cert"),
    (["listen", "--tls", "--tls-cert", "{server}", "--tls-key", "{server_key}", "--tls-require-client-cert", "0"],
     "--tls-ca"),
    (["listen", "--tls-cert", "{server}", "0"], "need --tls"),
]


@pytest.mark.parametrize(("args", "expected"), USAGE_ERRORS, ids=[" ".join(a[:3]) + f"-{i}" for i, (a, _) in
                                                                  enumerate(USAGE_ERRORS)])
def test_usage_errors(certs: Certs, args: list[str], expected: str) -> None:
    """Each bad combination: exit 2, the cause named, no traceback (every output checked, not the last)."""
    values = {"ca": certs.ca, "missing": str(Path(certs.ca).with_name("missing.crt")), "client": certs.client,
              "server": certs.server, "server_key": certs.server_key}
    code, out, err = run_dcmnet(*(a.format(**values) for a in args))
    assert code == 2 and expected in err, err
    no_traceback(err)
    no_traceback(out)


def test_plain_echo_does_not_import_ssl() -> None:
    """Start-up: `dcmnet --help` and a plain `dcmnet echo` (a whole run) never load ssl."""
    with listen_server() as server:
        probe = textwrap.dedent(f"""
            import contextlib, io, sys
            import dcmnet_cli.cli.main as main
            for argv in (["--help"], ["echo", "{LOOPBACK}", "{server.port}"]):
                with contextlib.redirect_stdout(io.StringIO()):
                    try:
                        main.main(argv)
                    except SystemExit as done:
                        assert done.code == 0, (argv, done.code)
                print(argv[0], "ssl" in sys.modules)
        """)
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, cwd=ROOT,
                              env=base_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["--help", "False", "echo", "False"], done.stdout
