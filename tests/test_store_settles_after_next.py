"""``dcmnet store`` reports an answered file (counts, progress, log line, JSON: ``Callbacks.on_file``) only
once the next file's request is on the wire, so that work overlaps the peer's instead of delaying the next
request (services/scu/store.py ``_exchange``); files are still reported in order, each exactly once, and a
response received before the association ends is never lost."""

from __future__ import annotations

from pathlib import Path

from store_helpers import make_file, received
from wire import memory_peer

from dcmnet_cli.services.scu import store as store_module


def _run(tmp_path: Path, monkeypatch, names: list[str], after_send=None, classes=None):  # type: ignore[no-untyped-def]
    from dcmnet_cli.part10.sopclasses import storage_contexts
    from dcmnet_cli.services.peer import Peer
    from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity
    from dcmnet_cli.services.scp.storage import StorageConfig, StorageSCP
    from dcmnet_cli.services.scp.store_handler import storage_handlers
    from dcmnet_cli.services.scu.store_inputs import collect
    from dcmnet_cli.services.scu.store_results import Callbacks
    from dcmnet_cli.transport.client import Timeouts
    from dcmnet_cli.ul.negotiation import AcceptorPolicy

    events: list[tuple[str, str]] = []
    send_one = store_module._send_one

    def recorded(settings, session, file, *args, **kwargs):  # type: ignore[no-untyped-def]
        message_id = send_one(settings, session, file, *args, **kwargs)
        events.append(("sent" if message_id is not None else "not sent", Path(file.path).name))
        if after_send is not None:
            after_send(settings, Path(file.path).name)
        return message_id

    monkeypatch.setattr(store_module, "_send_one", recorded)
    storage = StorageSCP(StorageConfig(str(tmp_path / "out"), fsync=False))
    storage.prepare()
    policy = AcceptorPolicy(ae_title="MEMSCP", contexts=storage_contexts(ALL_UNCOMPRESSED, False, ALL_UNCOMPRESSED))
    entity = ApplicationEntity(policy, handlers=storage_handlers(storage))
    sources = [make_file(tmp_path / "in", name, **({"sop_class": classes[name]} if name in (classes or {}) else {}))
               for name in names]
    try:
        with memory_peer(entity, monkeypatch):
            files, problems = collect([str(p) for p in sources])
            assert not problems
            result = store_module.store(
                Peer("memory", 104, "MEMSCP"), files, "MEMSCU", Timeouts(connect=5, acse=5, dimse=5, network=5),
                callbacks=Callbacks(on_file=lambda outcome: events.append(("settled", Path(outcome.path).name))))
    finally:
        storage.close(1.0)
    return events, result


def test_a_file_is_reported_after_the_next_request_was_sent_and_in_order(tmp_path, monkeypatch):
    names = ["a", "b", "c"]
    events, result = _run(tmp_path, monkeypatch, names)
    files = [f"{name}.dcm" for name in names]
    assert [Path(o.path).name for o in result.files] == files
    assert [o.status for o in result.files] == [0, 0, 0]
    assert events == [("sent", files[0]), ("sent", files[1]), ("settled", files[0]), ("sent", files[2]),
                      ("settled", files[1]), ("settled", files[2])]


def test_a_response_received_before_the_run_stops_is_reported_with_its_status(tmp_path, monkeypatch):
    """Stopped (Ctrl-C) once b's request is sent: a is reported when b is on the wire, b when its response
    came; c, never sent, fails as interrupted. b's response waited for the next request that never went:
    it is reported all the same, once, with its status."""

    def stop_after_b(settings, name):  # type: ignore[no-untyped-def]
        if name == "b.dcm":
            settings.pool._halt()  # the flag only: the association is not interrupted

    events, result = _run(tmp_path, monkeypatch, ["a", "b", "c"], after_send=stop_after_b)
    assert events == [("sent", "a.dcm"), ("sent", "b.dcm"), ("settled", "a.dcm"), ("settled", "b.dcm"),
                      ("settled", "c.dcm")]
    outcome = {Path(o.path).name: o for o in result.files}
    assert outcome["a.dcm"].status == 0 and outcome["b.dcm"].status == 0
    assert outcome["c.dcm"].status is None and outcome["c.dcm"].error is not None
    assert len(received(tmp_path / "out")) == 2


def test_a_file_failed_before_its_request_is_reported_after_the_answered_one_before_it(tmp_path, monkeypatch):
    """b's SOP class is one the SCP does not accept (files go class by class: a, c, then b): b fails without
    a request, and is reported after c, whose response came before."""
    events, result = _run(tmp_path, monkeypatch, ["a", "b", "c"], classes={"b": "1.2.826.0.1.3680043.10.1137.99"})
    assert events == [("sent", "a.dcm"), ("sent", "c.dcm"), ("settled", "a.dcm"), ("not sent", "b.dcm"),
                      ("settled", "c.dcm"), ("settled", "b.dcm")]
    outcome = {Path(o.path).name: o for o in result.files}
    assert outcome["a.dcm"].status == 0 and outcome["c.dcm"].status == 0
    assert outcome["b.dcm"].status is None and "accepted no presentation context" in str(outcome["b.dcm"].error)
