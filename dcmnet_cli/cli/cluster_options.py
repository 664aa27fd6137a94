"""``listen``'s options for running several nodes behind a load balancer (issue 14; README "Several nodes
behind HAProxy"): ``--node-id``, ``--proxy-protocol``, ``--health-check-aet``, ``--print-health-check``.

The wiring is four calls from listen.py: :func:`cluster_setup` at start (validates, answers
``--print-health-check``, names this node's temporaries), :func:`attach` once the Storage SCP exists
(events and hooks learn the node), :func:`cluster_servers` around the server factory (the PROXY protocol),
and :func:`summarize` in the ``stopped`` summary.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from .app import App
from .options import ae_title, stack

cluster_options = stack(
    click.option("--node-id", default=None, metavar="ID",
                 help="This node's name among several sharing one folder (1-64 of A-Z a-z 0-9 . _ -) [default: the "
                      "host name]: in every --json event (\"node\"), in hooks (DCMNET_NODE_ID) and in the names of its "
                      "temporary files, which only this node's start-up cleanup removes."),
    click.option("--proxy-protocol", is_flag=True,
                 help="Every connection starts with a PROXY protocol v2 header (HAProxy: send-proxy-v2), read within "
                      "--artim-timeout; its source address is the peer in logs, --json and hooks. Connections without "
                      "a valid one are closed (counted as dropped, logged). v1 (text) headers are refused."),
    click.option("--health-check-aet", default=None, metavar="AET", callback=ae_title,
                 help="Associations from this calling AE title (a load balancer's DICOM health check) are logged only "
                      "with -v and counted apart in the summary (see --print-health-check)."),
    click.option("--print-health-check", is_flag=True,
                 help="Print HAProxy tcp-check lines for a DICOM health check of this node (an A-ASSOCIATE-RQ for "
                      "Verification from --health-check-aet [HEALTHCHECK] to -aet, expecting an A-ASSOCIATE-AC, then "
                      "a release) and exit."),
)


class ClusterSetup:
    def __init__(self, node_id: str, health_aet: str | None, proxy_protocol: bool) -> None:
        from ..services.scp.cluster import NodeEvents

        self.events = NodeEvents(node_id, health_aet)
        self.proxy_protocol = proxy_protocol


def cluster_setup(app: App, aetitle: str, options: dict[str, Any]) -> ClusterSetup | None:
    """The node's settings; None after printing the health check (--print-health-check: exit 0).
    An invalid --node-id is a usage error (exit 2). Names this process's temporary files after the node."""
    from ..services.scp import cluster
    from ..services.scp.placement import TEMP_NAMES

    if options.pop("print_health_check", False):
        app.result(cluster.haproxy_check(aetitle, options.get("health_check_aet") or cluster.DEFAULT_HEALTH_AET))
        return None
    node_id = options.pop("node_id", None)
    try:
        node_id = cluster.check_node_id(node_id) if node_id is not None else cluster.default_node_id()
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="'--node-id'") from None
    TEMP_NAMES.node = node_id
    from ..services.archive.postgres import set_node

    set_node(node_id)  # stored with every row this node writes to a PostgreSQL index
    return ClusterSetup(node_id, options.pop("health_check_aet", None), options.pop("proxy_protocol", False))


def attach(setup: ClusterSetup, events: Any) -> None:
    """The event log (``events.cluster``) and the Storage SCP's hooks (DCMNET_NODE_ID) learn the node."""
    events.cluster = setup.events
    storage = getattr(events, "storage", None)
    if storage is not None:
        storage.hooks.env.update(setup.events.hook_env())


def cluster_servers(setup: ClusterSetup, events: Any, make_server: Callable[[int], Any]) -> Callable[[int], Any]:
    """``make_server`` whose servers expect the PROXY protocol header when asked to; the event log and
    the hooks learn the node first (:func:`attach`)."""
    attach(setup, events)

    def make(port: int) -> Any:
        server = make_server(port)
        server.proxy_protocol = setup.proxy_protocol
        return server

    return make


def summarize(events: Any, summary: dict[str, Any], text: str) -> str:
    cluster = getattr(events, "cluster", None)
    return text if cluster is None else cluster.summarize(summary, text)


__all__ = ["ClusterSetup", "attach", "cluster_options", "cluster_servers", "cluster_setup", "summarize"]
