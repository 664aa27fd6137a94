"""Several ``listen`` nodes behind one TCP load balancer (issue 14): node identity, the DICOM health check.

- A node identity (``listen --node-id``, default the host name made safe): in every ``--json`` event
  (``"node"``), in every hook's environment (``DCMNET_NODE_ID``), and in the names of the node's
  temporary files (``.dcmnet-tmp-<node>~….part``), so one node's start-up cleanup never touches the
  in-flight files of another node writing to the same shared folder.
- The health check HAProxy runs (``tcp-check``): an A-ASSOCIATE-RQ for Verification sent as
  ``send-binary``, ``expect rbinary ^02`` (an A-ASSOCIATE-AC at the first byte: a rejection, 03, or an
  abort, 07, fail the check), then an A-RELEASE-RQ and ``expect rbinary ^06`` (the A-RELEASE-RP).
  :func:`haproxy_check` writes those lines from our own encoder (``listen --print-health-check``).
- Associations whose calling AE is ``--health-check-aet``: their events are logged only with ``-v``,
  and counted apart (``health_checks`` in the summary), so checks every few seconds do not flood logs.
"""

from __future__ import annotations

import platform
import re
from typing import Any, Mapping

from ...dimse.commandset import VERIFICATION_SOP_CLASS
from ...part10.syntaxes import IMPLICIT_LE
from ...ul.negotiation import build_contexts, build_request
from ...ul.pdu import ReleaseRQ
from ...transport.threads import Lock
from .events import Associated, AssociationEnded

NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
DEFAULT_HEALTH_AET = "HEALTHCHECK"


def check_node_id(text: str) -> str:
    """``text`` when it is a usable node identity (letters, digits, ``.``, ``_``, ``-``; at most 64), else ValueError."""
    if not NODE_ID.match(text):
        raise ValueError(f"node id {text!r}: use 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit)")
    return text


def default_node_id() -> str:
    """The host name, made a valid node id (other characters become ``-``)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", platform.node() or "node").lstrip("._-")[:64]
    return name or "node"


def health_check_request(called_ae: str, calling_ae: str = DEFAULT_HEALTH_AET) -> bytes:
    """The A-ASSOCIATE-RQ bytes of the check: Verification in Implicit VR Little Endian (every SCP takes it)."""
    contexts = build_contexts([(VERIFICATION_SOP_CLASS, (IMPLICIT_LE,))])
    return build_request(called_ae, calling_ae, contexts).encode()


def haproxy_check(called_ae: str, calling_ae: str = DEFAULT_HEALTH_AET) -> str:
    """The ``tcp-check`` lines of an HAProxy ``backend`` (mode tcp) that check a node with DICOM."""
    request = health_check_request(called_ae, calling_ae).hex()
    release = ReleaseRQ().encode().hex()
    return "\n".join((
        f"# DICOM health check: A-ASSOCIATE-RQ {calling_ae} -> {called_ae} (Verification), expect an",
        "# A-ASSOCIATE-AC (PDU type 02 at the first byte), then release. From: dcmnet listen --print-health-check",
        "option tcp-check",
        "tcp-check connect default",
        f"tcp-check send-binary {request}",
        "tcp-check expect rbinary ^02",
        f"tcp-check send-binary {release}",
        "tcp-check expect rbinary ^06",
    ))


class NodeEvents:
    """What ``listen`` adds to its event stream for a cluster: the node's fields, the health-check filter."""

    def __init__(self, node_id: str, health_aet: str | None = None) -> None:
        self.node_id, self.health_aet = node_id, health_aet
        self.fields: Mapping[str, Any] = {"node": node_id}
        self.health_checks = 0
        self._lock = Lock()

    def is_health_check(self, event: Any) -> bool:
        """True for the association events of ``--health-check-aet`` (counted once each, at its end)."""
        if self.health_aet is None or not isinstance(event, (Associated, AssociationEnded)):
            return False
        if event.calling_ae != self.health_aet:
            return False
        if isinstance(event, AssociationEnded):
            with self._lock:
                self.health_checks += 1
        return True

    def hook_env(self) -> dict[str, str]:
        return {"DCMNET_NODE_ID": self.node_id}

    def summarize(self, summary: dict[str, Any], text: str) -> str:
        """Add the node and the health checks to the ``stopped`` summary (associations then exclude them)."""
        summary["node"] = self.node_id
        if self.health_aet is None:
            return text
        summary["health_checks"] = self.health_checks
        summary["associations"] = max(0, summary.get("associations", 0) - self.health_checks)
        return text.replace(f"{_plural(summary['associations'] + self.health_checks, 'association')}",
                            f"{_plural(summary['associations'], 'association')} "
                            f"(+{_plural(self.health_checks, 'health check')})", 1)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


__all__ = ["DEFAULT_HEALTH_AET", "NodeEvents", "check_node_id", "default_node_id", "haproxy_check",
           "health_check_request"]
