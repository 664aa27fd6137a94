"""``listen -od`` makes the next object's unnamed temporary after a C-STORE-RSP, while the sender reads the
answer (StorageSCP.make_spare), so no O_TMPFILE open lies between a request's arrival and its response; an
unused one is freed when the association ends (and at close), never one made in a folder since removed
is used, and where temporaries must be named none is made ahead (it would be a visible file)."""

from __future__ import annotations

import os

from scp_units import Node, on_disk, request
from temp_modes import use_mode

from dcmnet_cli.services import session as session_module
from dcmnet_cli.services.scp import storage as storage_module
from dcmnet_cli.services.scp.store_handler import StoreHandler


def _record(monkeypatch) -> list[str]:
    """begin (a request's handler starts), made (an unnamed temporary opened), rsp (a response sent)."""
    log: list[str] = []
    make, begin, send = storage_module.create_unnamed, StoreHandler.begin, session_module.Session.send

    def made(root_fd):  # type: ignore[no-untyped-def]
        log.append("made")
        return make(root_fd)

    def began(self, *args):  # type: ignore[no-untyped-def]
        log.append("begin")
        return begin(self, *args)

    def sent(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        log.append("rsp")
        return send(self, *args, **kwargs)

    monkeypatch.setattr(storage_module, "create_unnamed", made)
    monkeypatch.setattr(StoreHandler, "begin", began)
    monkeypatch.setattr(session_module.Session, "send", sent)
    return log


def test_the_next_temporary_is_made_after_the_response(tmp_path, monkeypatch):
    use_mode("unnamed", monkeypatch)
    before = len(os.listdir("/proc/self/fd"))
    log = _record(monkeypatch)
    node = Node(tmp_path / "out")
    items = [request(f"unit-spare-{n}") for n in range(3)]
    assert [a.status for a in node.send(monkeypatch, items)] == [0, 0, 0]
    assert log == ["begin", "made", "rsp", "made"] + ["begin", "rsp", "made"] * 2
    assert on_disk(node.out) == sorted(f"{item[1]}.dcm" for item in items) and node.temporaries() == []
    assert node.scp._spares == []  # the spare made after the last response was freed at the release
    assert len(os.listdir("/proc/self/fd")) == before + 1  # the output folder only
    node.scp.close(0)
    assert len(os.listdir("/proc/self/fd")) == before
    assert on_disk(node.out) == sorted(f"{item[1]}.dcm" for item in items)


def test_named_temporaries_are_never_made_ahead(tmp_path, monkeypatch):
    use_mode("named", monkeypatch)
    log = _record(monkeypatch)
    node = Node(tmp_path / "out")
    items = [request(f"unit-named-{n}") for n in range(2)]
    assert [a.status for a in node.send(monkeypatch, items)] == [0, 0]
    assert "made" not in log and node.scp._spares == []
    assert node.temporaries() == [] and on_disk(node.out) == sorted(f"{item[1]}.dcm" for item in items)
    node.scp.close(0)


def test_a_failed_spare_is_left_for_the_next_request_to_make(tmp_path, monkeypatch):
    """A spare that cannot be made (disk full, say) changes nothing: the next request makes its own."""
    use_mode("unnamed", monkeypatch)
    node = Node(tmp_path / "out")
    calls = []
    make = storage_module.create_unnamed

    def failing_ahead(root_fd):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) % 2 == 0:  # every spare (the even calls): ENOSPC
            raise OSError(28, "No space left on device")
        return make(root_fd)

    monkeypatch.setattr(storage_module, "create_unnamed", failing_ahead)
    items = [request(f"unit-nospare-{n}") for n in range(3)]
    assert [a.status for a in node.send(monkeypatch, items)] == [0, 0, 0]
    assert len(calls) == 6 and node.scp._spares == []
    assert on_disk(node.out) == sorted(f"{item[1]}.dcm" for item in items)
    node.scp.close(0)


def test_a_spare_made_in_a_removed_folder_is_freed_not_used(tmp_path, monkeypatch):
    """(Using it would be caught by test_output_folder_removed_for_good_is_a700: a spare made in a folder
    removed for good must not turn "cannot create file" into another answer.)"""
    import shutil

    use_mode("unnamed", monkeypatch)
    before = len(os.listdir("/proc/self/fd"))
    node = Node(tmp_path / "out")
    assert [a.status for a in node.send(monkeypatch, [request("unit-old")])] == [0]
    shutil.rmtree(node.out)
    node.out.mkdir()
    assert [a.status for a in node.send(monkeypatch, [request("unit-new")])] == [0]
    assert on_disk(node.out) == [f"{request('unit-new')[1]}.dcm"]
    node.scp.close(0)
    assert len(os.listdir("/proc/self/fd")) == before


def test_no_more_than_spares_are_made_ahead(tmp_path, monkeypatch):
    """Associations taking turns may each leave one: never more than SPARES wait (each is a descriptor)."""
    use_mode("unnamed", monkeypatch)
    before = len(os.listdir("/proc/self/fd"))
    node = Node(tmp_path / "out")
    assert [a.status for a in node.send(monkeypatch, [request("unit-cap")])] == [0]
    for _ in range(storage_module.SPARES + 3):
        node.scp.make_spare()
    assert len(node.scp._spares) == storage_module.SPARES
    for _root, fd in node.scp._spares:  # made in the output folder (linked there later), unnamed
        assert os.readlink(f"/proc/self/fd/{fd}").startswith(str(node.out.resolve()) + "/#")
    assert len(os.listdir("/proc/self/fd")) == before + 1 + storage_module.SPARES  # the folder, the spares
    node.scp.close(0)
    assert len(os.listdir("/proc/self/fd")) == before


def test_an_aborted_association_leaves_no_spare(tmp_path, monkeypatch):
    """The end of an association that was not released (an abort, a dropped connection) frees them too."""
    from dcmnet_cli.services.session import AssociationReport

    use_mode("unnamed", monkeypatch)
    node = Node(tmp_path / "out")
    assert [a.status for a in node.send(monkeypatch, [request("unit-abort")])] == [0]
    node.scp.make_spare()
    assert len(node.scp._spares) == 1
    node.scp.association_ended(AssociationReport("127.0.0.1:1", "SCU", "MEMSCP"))
    assert node.scp._spares == []
    node.scp.close(0)
