"""Where an SCU connects: host, port and the called AE title."""

from __future__ import annotations

from typing import NamedTuple


class Peer(NamedTuple):
    host: str
    port: int
    called_ae: str = "ANY-SCP"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"
