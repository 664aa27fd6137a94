"""``listen --tls --tls-ca CA`` requires a client certificate, as DCMTK's storescp does when it verifies
peers; ``--tls-allow-anonymous`` accepts clients without one. Checked with our SCU and DCMTK's
``echoscu`` (``+tls KEY CERT`` with a certificate, ``+tla`` without). 127.0.0.1 only."""

from __future__ import annotations

import pytest

from helpers.procs import LOOPBACK, run_dcmnet, run_tool
import test_tls
from test_tls import QUICK, Certs, no_traceback, timed, tls_listen

certs = test_tls.certs  # the session fixture: a test CA, server, client and stranger certificates

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def echoscu(dcmtk, certs: Certs, port: int, *tls: str) -> tuple[int, str]:
    code, out, err = run_tool([dcmtk["echoscu"], *tls, "+cf", certs.ca, LOOPBACK, str(port)])
    return code, out + err


def test_a_ca_alone_requires_a_client_certificate(certs: Certs, dcmtk) -> None:
    with tls_listen(certs, "--tls-ca", certs.ca) as server:
        mark = server.mark()
        code, _, err, took = timed("echo", "--tls", "--tls-ca", certs.ca, LOOPBACK, str(server.port))
        assert code == 4 and took < QUICK, err
        no_traceback(err)
        assert "client certificate" in err and "--tls-cert FILE" in err, err
        assert server.wait_for_stderr("peer did not return a certificate", since=mark)
        assert server.wait_for_stderr("--tls-allow-anonymous", since=mark)

        mark = server.mark()
        code, output = echoscu(dcmtk, certs, server.port, "+tla")
        assert code != 0, output
        assert server.wait_for_stderr("peer did not return a certificate", since=mark)

        code, _, err = run_dcmnet("echo", "--tls", "--tls-ca", certs.ca, "--tls-cert", certs.client,
                                  "--tls-key", certs.client_key, LOOPBACK, str(server.port))
        assert code == 0, err
        code, output = echoscu(dcmtk, certs, server.port, "+tls", certs.client_key, certs.client)
        assert code == 0, output
        assert server.alive()


def test_allow_anonymous_accepts_clients_without_a_certificate(certs: Certs, dcmtk) -> None:
    with tls_listen(certs, "--tls-ca", certs.ca, "--tls-allow-anonymous") as server:
        code, _, err = run_dcmnet("echo", "--tls", "--tls-ca", certs.ca, LOOPBACK, str(server.port))
        assert code == 0, err
        code, output = echoscu(dcmtk, certs, server.port, "+tla")
        assert code == 0, output
        code, output = echoscu(dcmtk, certs, server.port, "+tls", certs.client_key, certs.client)
        assert code == 0, output
        # a certificate that is offered is still verified
        mark = server.mark()
        code, _, err = run_dcmnet("echo", "--tls", "--tls-ca", certs.ca, "--tls-cert", certs.stranger,
                                  "--tls-key", certs.stranger_key, LOOPBACK, str(server.port))
        assert code == 4, err
        assert server.wait_for_stderr("tls-error", since=mark)


def test_allow_anonymous_usage_errors(certs: Certs) -> None:
    code, _, err = run_dcmnet("listen", *certs.listen_args("--tls-allow-anonymous"), "0")
    assert code == 2 and "--tls-allow-anonymous needs --tls-ca" in err, err
    code, _, err = run_dcmnet("listen", *certs.listen_args("--tls-ca", certs.ca, "--tls-allow-anonymous",
                                                           "--tls-require-client-cert"), "0")
    assert code == 2 and "contradict" in err, err
    code, _, err = run_dcmnet("listen", "--tls-allow-anonymous", "0")
    assert code == 2 and "need --tls" in err, err
