"""Open an association as requestor: TCP connect, A-ASSOCIATE-RQ, wait for the answer.

Every failure becomes one of the package's errors with the exit code it implies: ConnectError (4) for
anything before the TCP connection (and, with TLS, the handshake) is complete, AssociationRejected (5),
AssociationAborted or TimeoutExpired (6) afterwards. No thread is started; the caller's thread drives the association.
"""

from __future__ import annotations

import time

from ..errors import AssociationAborted, AssociationRejected, ConnectError, TimeoutExpired
from ..dimse.connection import Aborted, AssociationAccepted, DIMSEConnection
from ..dimse.connection import AssociationRejected as RejectedEvent
from ..ul.negotiation import describe_rejection
from ..ul.pdu import AssociateRQ
from ..ul.records import NamedTuple
from ..ul.statemachine import Role
from .channel import Channel, Driver
from .sockets import Socket, connect as tcp_connect, gaierror

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    from .tls import ClientTLS

    D = TypeVar("D", bound=Driver)


class Timeouts(NamedTuple):
    """Seconds; None waits forever. ACSE bounds association set-up and release, DIMSE each response."""

    connect: float | None = 10.0
    acse: float | None = 30.0
    dimse: float | None = None
    network: float | None = None


def connect_socket(host: str, port: int, timeout: float | None) -> Socket:
    """TCP connect with a deadline; every failure becomes ConnectError with the cause in words."""
    try:
        # An ASCII host goes as bytes: a str host makes getaddrinfo load the idna codec (~2 ms).
        return tcp_connect(host.encode("ascii") if host.isascii() else host, port, timeout)
    except gaierror as error:
        raise ConnectError(f"cannot resolve host {host!r}: {error.strerror}") from None
    except UnicodeError as error:  # a non-ASCII name IDNA cannot encode (a label empty or over 63 characters)
        raise ConnectError(f"cannot resolve host {host!r}: not a valid host name ({error.__cause__ or error})") from None
    except ConnectionRefusedError:
        raise ConnectError(f"connection refused by {host}:{port}: is the peer listening on that port?") from None
    except TimeoutError:
        raise ConnectError(f"connection to {host}:{port} timed out after {timeout:g} s") from None
    except OSError as error:
        raise ConnectError(f"cannot connect to {host}:{port}: {error.strerror or error}") from None


def open_association(
    host: str,
    port: int,
    request: AssociateRQ,
    timeouts: Timeouts = Timeouts(),
    max_receive: int | None = None,
    trace: Callable[[str, str], None] | None = None,
    tls: ClientTLS | None = None,
) -> Channel:
    """Return a Channel whose association is established, or raise. ``trace`` sees every PDU (--debug).

    With ``tls`` the TCP connection is wrapped before anything is sent; the handshake is bounded by the
    connect timeout and every failure is a ConnectError (exit 4), as is an alert that ends the connection
    right after the handshake (TLS 1.3 servers refuse a client certificate only then).
    """
    sock = connect_socket(host, port, timeouts.connect)
    if tls is not None:
        from .tls import wrap_client

        sock = wrap_client(sock, tls, host, port)
    conn = requestor(request, max_receive, trace)
    channel = Channel(sock, conn, network_timeout=timeouts.network)
    return establish(channel, timeouts.acse, tls is not None, f"{host}:{port}")


def requestor(request: AssociateRQ, max_receive: int | None = None,
              trace: Callable[[str, str], None] | None = None) -> DIMSEConnection:
    """A requestor's DIMSE connection that sends ``request`` once its driver starts."""
    conn = DIMSEConnection(Role.REQUESTOR, max_receive or request.user_info.max_length or 0)
    conn.association.trace = trace
    conn.request(request)
    conn.connection_made()
    return conn


def establish(channel: D, acse_timeout: float | None, tls: bool = False, where: str = "") -> D:
    """Wait (ACSE timeout) for the answer to the A-ASSOCIATE-RQ the driver's connection sends; return the
    driver once accepted, else raise what the answer means (5 rejected, 6 aborted or silent, 4 TLS)."""
    host, _, port = where.rpartition(":")
    try:
        event = channel.next_event(acse_timeout)
    except TimeoutExpired:
        channel.abort()
        raise TimeoutExpired(f"no answer to A-ASSOCIATE-RQ within {acse_timeout:g} s (ACSE timeout)") from None
    except AssociationAborted as error:
        channel.abort()
        if tls and channel.bytes_received == 0:
            raise _tls_refused(channel, host, port) from None
        web = _web_reply(channel, where)
        if web is not None:
            raise AssociationAborted(web, error.source, error.reason) from None
        raise
    except BaseException:
        channel.abort()
        raise
    if isinstance(event, AssociationAccepted):
        return channel
    channel.close()
    silent = channel.bytes_received == 0 and (event is None or isinstance(event, Aborted))
    if silent and tls:
        raise _tls_refused(channel, host, port)
    if isinstance(event, RejectedEvent):
        rj = event.reject
        words, hint = describe_rejection(rj)
        raise AssociationRejected(rj.result, rj.source, rj.reason, f"association rejected: {words} (hint: {hint})")
    hint = " (if it expects TLS on this port, add --tls)" if silent else ""
    web = _web_reply(channel, where)
    if web is not None:
        raise AssociationAborted(web, *((event.source, event.reason) if isinstance(event, Aborted) else ()))
    if isinstance(event, Aborted):
        raise AssociationAborted(f"{event.message} during association set-up{hint}", event.source, event.reason)
    raise AssociationAborted(f"the peer closed the connection during association set-up{hint}")


def _web_reply(channel: Driver, where: str) -> str | None:
    """Words for a peer that answered our A-ASSOCIATE-RQ with HTTP or HTML (``HTTP/1.1 400 …``,
    ``<!DOCTYPE html>``): a web port, not a DICOM one. None when the first bytes look like anything else.

    The bytes are those of the last read, which during set-up is the first answer (a PDU header is
    decoded as soon as 6 bytes are in)."""
    if channel.bytes_received == 0:
        return None
    first = channel.last_read(80)
    if not (first.startswith(b"HTTP/") or first.lstrip().startswith(b"<")):
        return None
    line = first.split(b"\n", 1)[0].decode("latin-1").strip()
    shown = "".join(c if c.isprintable() else "?" for c in line)[:60]
    return (f"{where or 'the peer'} speaks HTTP, not DICOM (it answered {shown!r}): check the port "
            "(a web or DICOMweb port? DICOM is often on 104 or 11112)")


def _tls_refused(channel: Driver, host: str, port: str) -> ConnectError:
    """The peer ended a TLS connection before answering anything: with TLS 1.3 that is how a server
    refuses our client certificate (its alert comes after our side of the handshake is done)."""
    from .tls import describe_alert

    tls_error = channel.tls_error
    if tls_error is not None:
        why = describe_alert(tls_error)
    else:
        why = ("the connection was closed before any answer (the peer may require a client certificate "
               "it trusts: --tls-cert FILE --tls-key FILE)")
    return ConnectError(f"TLS connection to {host}:{port} refused by the peer after the handshake: {why}")


def release(channel: Driver, timeout: float | None) -> None:
    """A-RELEASE and wait for the RP (bounded by the ACSE timeout); abort if the peer never answers."""
    from ..dimse.connection import ReleaseConfirmed, ReleaseRequested

    if channel.closed:
        return
    channel.conn.release()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            event = channel.next_event(remaining)
            if event is None or isinstance(event, ReleaseConfirmed):
                break
            if isinstance(event, ReleaseRequested):
                channel.conn.release_response()  # release collision (Sta9 → Sta11)
            elif isinstance(event, Aborted):
                raise AssociationAborted(f"{event.message} during release", event.source, event.reason)
    except TimeoutExpired:
        channel.abort()
        raise TimeoutExpired(f"no A-RELEASE-RP within {timeout:g} s (ACSE timeout)") from None
    finally:
        channel.close()
