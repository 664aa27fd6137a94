"""TLS for DICOM: the secure transport connection profiles of PS3.15 Annex B, over Python's ``ssl``.

Rules of this module:

- ``ssl`` is imported inside the functions, never at module level: ``import ssl`` loads OpenSSL
  (several ms of start-up) that ``dcmnet --help`` and a plain ``dcmnet echo`` must not pay.
- TLS 1.2 is the floor on both sides (BCP 195, and the non-downgrading profile of PS3.15 B.9); Python's
  defaults then offer TLS 1.3 first. The peer's certificate is verified by default; turning that off is
  an explicit setting (``verify=False``) the CLI warns about.
- Private key passwords come from an environment variable named by the caller, never from argv; an
  encrypted key without one fails with a message instead of OpenSSL prompting on the terminal.
- Handshake failures become :class:`ConnectError` (exit 4) with the cause in words and, where we can
  tell, the fix. The handshake is bounded by the socket's timeout, which the caller sets (the connect
  timeout for a client, ARTIM for a server); Python applies it as one deadline for the whole handshake.
"""

from __future__ import annotations

import os
import socket
from typing import Any, NamedTuple

from ..errors import ConnectError
from .inputfiles import regular_or_copy
from .sockets import Socket

MAX_PEM_BYTES = 16 << 20
"""A CA bundle of a few thousand certificates is ~1 MB; more is not a PEM file."""


class TLSConfigError(ValueError):
    """A certificate, key, CA file or password setting cannot be used (a usage/config error, exit 2)."""


class ClientSettings(NamedTuple):
    """What ``--tls`` and its options (or a config-file node) ask for on the requestor side."""

    ca: str | None = None
    """CA bundle (PEM) to verify the peer with; None: the system trust store."""
    cert: str | None = None
    key: str | None = None
    key_password_env: str | None = None
    verify: bool = True
    server_name: str | None = None
    """Name sent as SNI and checked against the certificate; None: the host we connect to."""


class ServerSettings(NamedTuple):
    """``listen --tls``: our certificate and key; with ``ca``, clients must present a certificate that
    chains to it (as DCMTK's storescp does when it verifies peers) unless ``allow_anonymous``."""

    cert: str
    key: str | None
    """None: the key is in the ``cert`` file."""
    ca: str | None = None
    require_client_cert: bool = False
    """Kept for callers that ask for it explicitly; a ``ca`` alone already requires a certificate."""
    key_password_env: str | None = None
    allow_anonymous: bool = False
    """With ``ca``: clients without a certificate are accepted too (one they offer is still verified)."""


class ClientTLS:
    """A built client context plus the name to check; what :func:`~.client.open_association` needs."""

    __slots__ = ("context", "server_name", "verify")

    def __init__(self, context: Any, server_name: str | None, verify: bool) -> None:
        self.context = context
        self.server_name = server_name
        self.verify = verify


def _password(env: str | None, key: str) -> Any:
    """The ``password`` argument of ``load_cert_chain``: a callable, so OpenSSL never prompts."""
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise TLSConfigError(f"environment variable {env} (from --tls-key-password-env) is not set")
        return value.encode()

    def missing() -> bytes:
        raise TLSConfigError(f"the private key {key} is encrypted: name an environment variable holding its "
                             "password with --tls-key-password-env VAR")

    return missing


def _load_chain(context: Any, cert: str, key: str | None, password_env: str | None) -> None:
    import ssl

    password = _password(password_env, key or cert)
    copies: list[int] = []
    try:
        cert_path = _openable(cert, copies)
        context.load_cert_chain(cert_path, _openable(key, copies) if key else None, password=password)
    except TLSConfigError:
        raise
    except OSError as error:  # ssl.SSLError is an OSError too
        reason = getattr(error, "reason", None) or error.strerror or str(error)
        if isinstance(error, ssl.SSLError) and reason in ("KEY_VALUES_MISMATCH",):
            reason = "the key does not belong to the certificate"
        raise TLSConfigError(f"cannot load certificate {cert} and key {key or cert}: {_words(reason)}") from None
    finally:
        for fd in copies:
            os.close(fd)


def _openable(path: str, copies: list[int]) -> str:
    """``path`` for OpenSSL to open: a pipe (``<(...)``) is copied to a memory file first, a FIFO without a
    writer or a device is refused, so loading never blocks (see :mod:`.inputfiles`)."""
    usable, fd = regular_or_copy(path, MAX_PEM_BYTES)
    if fd is not None:
        copies.append(fd)
    return usable


def _load_ca(context: Any, ca: str) -> None:
    copies: list[int] = []
    try:
        context.load_verify_locations(cafile=_openable(ca, copies))
    except OSError as error:
        reason = getattr(error, "reason", None) or error.strerror or str(error)
        raise TLSConfigError(f"cannot load CA certificates from {ca}: {_words(reason)}") from None
    finally:
        for fd in copies:
            os.close(fd)


def client_tls(settings: ClientSettings) -> ClientTLS:
    """The client context for ``settings``: TLS ≥ 1.2, peer verified (system store or ``ca``) unless
    ``verify`` is False, our certificate offered when given. Raises :class:`TLSConfigError`."""
    import ssl

    if settings.key is not None and settings.cert is None:
        raise TLSConfigError("--tls-key needs --tls-cert")
    if settings.ca is not None:
        # Only this bundle is trusted (as create_default_context(cafile=...) would), loaded here so a
        # bad file is named in the error.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _load_ca(context, settings.ca)
    else:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # the system trust store
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.cert is not None:
        _load_chain(context, settings.cert, settings.key, settings.key_password_env)
    return ClientTLS(context, settings.server_name, settings.verify)


def server_context(settings: ServerSettings) -> Any:
    """The server context: TLS ≥ 1.2; with ``ca``, a client certificate that chains to it is required
    (CERT_REQUIRED), or only checked when offered with ``allow_anonymous`` (CERT_OPTIONAL). Raises
    :class:`TLSConfigError`."""
    import ssl

    if settings.require_client_cert and settings.ca is None:
        raise TLSConfigError("--tls-require-client-cert needs --tls-ca FILE (the CA that signs client certificates)")
    if settings.allow_anonymous and settings.ca is None:
        raise TLSConfigError("--tls-allow-anonymous needs --tls-ca FILE: without it no client certificate is asked for")
    if settings.allow_anonymous and settings.require_client_cert:
        raise TLSConfigError("--tls-allow-anonymous and --tls-require-client-cert contradict each other: give one")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, settings.cert, settings.key, settings.key_password_env)
    if settings.ca is not None:
        _load_ca(context, settings.ca)
        context.verify_mode = ssl.CERT_OPTIONAL if settings.allow_anonymous else ssl.CERT_REQUIRED
    return context


# ------------------------------------------------------------------ handshakes


def wrap_client(sock: Socket, tls: ClientTLS, host: str, port: int) -> socket.socket:
    """TLS handshake as client on a connected socket (bounded by its timeout); ConnectError on failure.

    The name checked is ``tls.server_name`` or ``host``; for an IP address Python checks the
    certificate's IP SANs and sends no SNI.
    """
    import ssl

    timeout = sock.gettimeout()
    try:
        return tls.context.wrap_socket(sock, server_hostname=tls.server_name or host)
    except (OSError, ValueError) as error:
        sock.close()  # wrap_socket closed its own copy; this one is detached already, so harmless
        raise ConnectError(client_failure(error, host, port, timeout, ssl)) from None


def client_failure(error: BaseException, host: str, port: int, timeout: float | None, ssl: Any = None) -> str:
    """One line naming why the TLS handshake with ``host:port`` failed, and the fix when we know it."""
    if ssl is None:
        import ssl
    where = f"TLS handshake with {host}:{port}"
    if isinstance(error, (socket.timeout, TimeoutError)):
        after = f" after {timeout:g} s" if timeout else ""
        return f"{where} timed out{after} (is the peer speaking TLS on that port?)"
    if isinstance(error, ssl.SSLCertVerificationError):
        message = error.verify_message or _words(error.reason or "")
        if "hostname" in message.lower() or "ip address mismatch" in message.lower():
            hint = "use --tls-server-name NAME, or --tls-no-verify"
        else:
            hint = "use --tls-ca FILE, or --tls-no-verify"
        return f"{where} failed: certificate verify failed: {message} ({hint})"
    if isinstance(error, (ssl.SSLEOFError, ConnectionError)) or (isinstance(error, OSError) and not isinstance(error, ssl.SSLError)):
        detail = getattr(error, "strerror", None) or "the peer closed the connection"
        return f"{where} failed: {detail} (is the peer speaking TLS on that port? does it require a client certificate?)"
    if isinstance(error, ssl.SSLError):
        reason = error.reason or str(error)
        return f"{where} failed: {_words(reason)}{_hint(reason)}"
    return f"{where} failed: {error}"


def describe_alert(error: BaseException) -> str:
    """Words for an SSL error seen after the handshake (a TLS 1.3 alert about our certificate)."""
    reason = getattr(error, "reason", None) or str(error)
    return f"{_words(reason)}{_hint(reason)}"


def _words(reason: str) -> str:
    return reason.replace("_", " ").lower() if reason.isupper() or "_" in reason else reason


def _hint(reason: str) -> str:
    reason = reason.upper()
    if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER" in reason or "PACKET_LENGTH_TOO_LONG" in reason:
        return " (the peer does not speak TLS on that port: drop --tls, or check the port)"
    if "PROTOCOL_VERSION" in reason or "UNSUPPORTED_PROTOCOL" in reason or "NO_PROTOCOLS" in reason:
        return " (no TLS version in common: dcmnet needs TLS 1.2 or later)"
    if "CERTIFICATE_REQUIRED" in reason or "HANDSHAKE_FAILURE" in reason:
        return " (the peer may require a client certificate: --tls-cert FILE --tls-key FILE)"
    if "UNKNOWN_CA" in reason or "BAD_CERTIFICATE" in reason or "CERTIFICATE_UNKNOWN" in reason:
        return " (the peer does not trust our client certificate)"
    return ""


def server_hint(error: BaseException) -> str:
    """Server side: the fix for a handshake a client without a certificate failed (TLS 1.2 and 1.3)."""
    if "PEER_DID_NOT_RETURN_A_CERTIFICATE" in str(getattr(error, "reason", "") or "").upper():
        return (" (the client offered no certificate: one signed by --tls-ca is required; "
                "--tls-allow-anonymous accepts clients without one)")
    return ""


def accept_tls(conn: socket.socket, context: Any, timeout: float | None) -> tuple[socket.socket | None, str]:
    """Server side of the handshake on an accepted socket, bounded by ``timeout`` (ARTIM).

    Returns ``(tls socket, summary)`` or ``(None, reason)``; the socket is closed on failure. Never raises
    for anything the peer does.
    """
    import ssl

    conn.settimeout(timeout)
    try:
        wrapped = context.wrap_socket(conn, server_side=True)
    except (OSError, ValueError) as error:
        conn.close()
        if isinstance(error, (socket.timeout, TimeoutError)):
            return None, f"TLS handshake timed out after {timeout:g} s" if timeout else "TLS handshake timed out"
        if isinstance(error, ssl.SSLError):
            reason = getattr(error, "verify_message", None) or error.reason or str(error)
            return None, f"TLS handshake failed: {_words(reason)}{server_hint(error)}"
        return None, f"TLS handshake failed: {getattr(error, 'strerror', None) or error or 'connection closed'}"
    return wrapped, summary(wrapped)


def summary(sock: Any) -> str:
    """``TLSv1.3 TLS_AES_256_GCM_SHA384, client CN=…`` for logs."""
    cipher = sock.cipher()
    text = f"{sock.version()} {cipher[0] if cipher else '?'}"
    peer = sock.getpeercert()
    if peer:
        subject = ", ".join(f"{k}={v}" for rdn in peer.get("subject", ()) for k, v in rdn)
        text += f", client certificate {subject or '(no subject)'}"
    return text


__all__ = ["ClientSettings", "ServerSettings", "ClientTLS", "TLSConfigError", "client_tls", "server_context",
           "wrap_client", "accept_tls", "describe_alert"]
