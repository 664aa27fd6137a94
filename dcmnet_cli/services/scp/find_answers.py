"""What every C-FIND SCP shares (PS3.7 §9.1.2, §9.3.2): the final response after the pending ones, the
identifier check, C-CANCEL seen between answers, and how a failure while answering becomes a status.

A subclass answers one request in ``_answer`` (sending its pending responses itself) and returns the final
status and Error Comment; raising :class:`Cancelled` ends with 0xFE00, :class:`Abandoned` sends nothing
(the association is gone).
"""

from __future__ import annotations

from typing import Any, Callable

from ...dimse.commandset import c_find_rsp
from ...dimse.status import CANCEL, CANNOT_UNDERSTAND, SUCCESS
from ...errors import AssociationAborted, DcmnetError, DIMSEError
from ..session import MessageHandler

PENDING, PENDING_WARNING = 0xFF00, 0xFF01
IMPLICIT_LE = "1.2.840.10008.1.2"


class Cancelled(Exception):
    """A C-CANCEL-RQ for the request being answered arrived."""


class Abandoned(Exception):
    """The association ended while answering: no final response can be sent."""


class FindAnswers(MessageHandler):
    """One C-FIND-RQ answered by pending responses, then the final one."""

    def complete(self, dataset: bytes | None) -> None:
        message = self.message
        assert message.message_id is not None
        self.session.report.queries += 1
        sop_class = message.affected_sop_class_uid or ""
        context = self.session.contexts.get(self.context_id)
        syntax = context.transfer_syntax if context else IMPLICIT_LE
        try:
            status, comment = self._answer(sop_class, dataset, syntax)
        except Cancelled:
            status, comment = CANCEL, None
        except Abandoned:
            return
        self.session.send(self.context_id, c_find_rsp(message.message_id, status, sop_class, error_comment=comment))

    def _answer(self, sop_class: str, dataset: bytes | None, syntax: str) -> tuple[int, str | None]:
        raise NotImplementedError

    def _check_cancel(self) -> None:
        """Serve what the peer sent meanwhile, without waiting: a C-CANCEL-RQ for this request (noted by
        the session) raises Cancelled; the end of the association raises Abandoned."""
        try:
            self.session.serve_arrived("C-CANCEL-RQ")
        except DcmnetError:
            raise Abandoned() from None
        if self.message.message_id in self.session.cancelled:
            self.session.cancelled.discard(self.message.message_id)
            raise Cancelled()


def decode_request_identifier(dataset: bytes | None, syntax: str) -> tuple[Any, str | None]:
    """The request's identifier, or (None, Error Comment) for 0xC000: none, or undecodable."""
    from ..query import decode_identifier

    if not dataset:
        return None, "C-FIND-RQ without an identifier"
    try:
        return decode_identifier(dataset, syntax), None
    except DIMSEError as error:
        return None, str(error)[:64]


def answering(run: Callable[[], None], on_os_error: tuple[int, str] | None = None) -> tuple[int, str | None]:
    """Run the answers; the final status: Success, or 0xC000 (0xA700 for an OSError when
    ``on_os_error`` names it) with the reason. Cancel and the association's end pass through."""
    try:
        run()
    except (Cancelled, Abandoned):
        raise
    except AssociationAborted:
        raise Abandoned() from None
    except OSError as error:
        if on_os_error is None:
            return CANNOT_UNDERSTAND, f"{type(error).__name__}: {error}"[:64]
        return on_os_error[0], f"{on_os_error[1]}: {error}"[:64]
    except Exception as error:  # sqlite3, pydicom or a value that cannot be matched: this query fails
        return CANNOT_UNDERSTAND, f"{type(error).__name__}: {error}"[:64]
    return SUCCESS, None
