"""The user identity an SCU presents (PS3.7 D.3.3.7), and what the peer answered.

An :class:`Identity` rides on the :class:`~dcmnet_cli.services.peer.Peer` (``peer.identity``), so every
association a command opens to that peer proposes it without each service passing it along;
:func:`~.association.associate` records the peer's answer here (``response``) and refuses to go on when a
positive response was asked for and none came (:class:`IdentityNotConfirmed`, exit 5). Nothing here ever
renders the passcode or token: :meth:`Identity.summary` (the ``identity`` field of ``--json``) and
:meth:`Identity.describe_answer` (the ``-v`` line) give the type, the username and sizes only.
"""

from __future__ import annotations

from ...ul.typenames import Any  # typing's names, typing not imported (start-up)

from ...errors import AssociationRejected
from ...ul.items import MAX_IDENTITY_FIELD, UserIdentityAC, UserIdentityRQ, UserIdentityType


class IdentityNotConfirmed(AssociationRejected):
    """``--identity-response`` was given and the peer's A-ASSOCIATE-AC has no User Identity sub-item: it
    did not verify who we are (it may not support identities at all). Exit 5, like a rejection."""

    def __init__(self, message: str) -> None:
        super().__init__(0, 0, 0, message)


class IdentityError(ValueError):
    """The identity cannot be sent (a field too long for the sub-item): a usage error."""


class Identity:
    """The request to send, and (``response``) the peer's positive response once an association was
    accepted with one; ``associated``: whether one was accepted at all (before that, no answer is known).
    A plain class, not a dataclass: ``dcmnet echo`` does not import :mod:`dataclasses` (start-up)."""

    __slots__ = ("request", "response", "associated")

    def __init__(self, request: UserIdentityRQ) -> None:
        self.request = request
        self.response: UserIdentityAC | None = None
        self.associated = False

    def __repr__(self) -> str:
        return f"Identity({self.request.describe()})"

    @classmethod
    def build(cls, kind: int, primary: bytes, secondary: bytes = b"", response: bool = False) -> Identity:
        if len(primary) + len(secondary) > MAX_IDENTITY_FIELD:
            name = UserIdentityType.NAMES.get(kind, str(kind))
            raise IdentityError(f"the {name} identity is {len(primary) + len(secondary)} bytes: at most "
                                f"{MAX_IDENTITY_FIELD} fit in the user identity sub-item (PS3.7 D.3.3.7)")
        return cls(UserIdentityRQ(kind, response, primary, secondary))

    def record(self, answer: UserIdentityAC | None) -> None:
        """The peer's answer from an accepted association; raises when a requested response is missing."""
        self.associated = True
        self.response = answer
        if answer is None and self.request.positive_response_requested:
            raise IdentityNotConfirmed(
                "the peer accepted the association but did not confirm the user identity (--identity-response): "
                "it does not verify identities, or not this type; drop --identity-response to go on regardless")

    def describe_answer(self) -> str:
        """The ``-v`` line about the identity."""
        sent = f"user identity sent: {self.request.describe()}"
        if self.response is not None:
            return f"{sent}; the peer confirmed it (positive response, {len(self.response.server_response)} bytes of server response)"
        return f"{sent}; {'no response from the peer (none was asked for)' if not self.request.positive_response_requested else 'the peer did not confirm it'}"

    def summary(self) -> dict[str, Any]:
        """The ``identity`` field of ``--json`` summaries (never a secret)."""
        request = self.request
        confirmed = (self.response is not None) if self.associated and request.positive_response_requested else None
        record: dict[str, Any] = {"type": UserIdentityType.NAMES.get(request.identity_type, request.identity_type),
                                  "user": request.user, "response_requested": request.positive_response_requested,
                                  "confirmed": confirmed}
        if self.response is not None:
            record["server_response_bytes"] = len(self.response.server_response)
        return record


def identity_of(peer: Any) -> Identity | None:
    """The identity a peer record carries (None for peers without one, e.g. move destinations)."""
    identity = getattr(peer, "identity", None)
    return identity if isinstance(identity, Identity) else None


def json_field(peer: Any) -> dict[str, Any]:
    """``{"identity": {...}}`` for a JSON summary when the peer was called with an identity, else ``{}``."""
    identity = identity_of(peer)
    return {"identity": identity.summary()} if identity is not None else {}
