"""Where an SCU connects: host, port, the called AE title, and how (plain TCP, or TLS)."""

from __future__ import annotations

from ..ul.typenames import Any, NamedTuple  # typing's names, typing not imported (start-up)


class Peer(NamedTuple):
    host: str
    port: int
    called_ae: str = "ANY-SCP"
    tls: Any = None
    """A :class:`~dcmnet_cli.transport.tls.ClientTLS` to connect with TLS; None for plain TCP."""
    identity: Any = None
    """A :class:`~dcmnet_cli.services.scu.identity.Identity` every association to this peer proposes (PS3.7
    D.3.3.7: ``--user``, ``--jwt-env``...), which also records the peer's answer; None for none."""

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"
