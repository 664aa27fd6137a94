"""Where an SCU connects: host, port, the called AE title, and how (plain TCP, or TLS)."""

from __future__ import annotations

from typing import Any, NamedTuple


class Peer(NamedTuple):
    host: str
    port: int
    called_ae: str = "ANY-SCP"
    tls: Any = None
    """A :class:`~dcmnet_cli.transport.tls.ClientTLS` to connect with TLS; None for plain TCP."""

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"
