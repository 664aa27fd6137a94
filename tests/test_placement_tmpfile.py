"""Unnamed temporaries (O_TMPFILE) in ``listen -od`` (issue 13, services/scp/placement.py): the file is
created with no name in the output folder, linked to its final name in one call (``linkat`` through
``/proc/self/fd``, which never overwrites), and the named ``.dcmnet-tmp-….part`` path is the fallback,
chosen once per output folder when the filesystem refuses O_TMPFILE or linking through ``/proc``.

What a user sees must not depend on the path taken: statuses, files, duplicates, nothing left behind.
The tests shared by both paths run under both (the ``temp_mode`` fixture of test_placement_units.py,
test_store_handler_units.py, test_storage_units.py); these are the unnamed path's own cases, the fallback
decision, and both paths through the real ``dcmnet listen``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
from pathlib import Path

import pytest
from scp_units import Node, on_disk, request
from temp_modes import MODES, O_TMPFILE, use_mode
import temp_modes

from dcmnet_cli.services.scp import placement, store_handler
from dcmnet_cli.services.scp.placement import (TEMP_PREFIX, TempNames, clean_leftovers, create_unnamed, link_temp,
                                               place_unnamed, unnamed_works, write_all)

root = temp_modes.root  # the fixture: (output folder, its descriptor)


def _unnamed(root_fd: int, data: bytes) -> int:
    fd = create_unnamed(root_fd)
    write_all(fd, data)
    return fd


def _place(root_fd: int, data: bytes, name: str, policy: str, folder_fd: int | None = None):
    fd = _unnamed(root_fd, data)
    try:
        return place_unnamed(root_fd, fd, root_fd if folder_fd is None else folder_fd, name, policy)
    finally:
        os.close(fd)


def _count(monkeypatch, module, name: str, when=lambda *a, **k: True) -> list:
    calls: list = []
    real = getattr(module, name)

    def counting(*args, **kwargs):
        if when(*args, **kwargs):
            calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counting)
    return calls


def _refusing(monkeypatch, name: str, when, code: int) -> None:
    real = getattr(os, name)

    def refusing(*args, **kwargs):
        if when(*args, **kwargs):
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, refusing)


def _is_tmpfile(name, flags=0, *args, **kwargs) -> bool:
    return flags & O_TMPFILE == O_TMPFILE


def _through_proc(src, dst, **kwargs) -> bool:
    return str(src).startswith("/proc/self/fd/")


# --------------------------------------------------------------------------- the unnamed temporary itself

def test_unnamed_temporary_is_invisible_0644_and_freed_when_closed(root):
    out, fd = root
    tfd = _unnamed(fd, b"data")
    try:
        assert os.listdir(out) == [] and stat.S_IMODE(os.fstat(tfd).st_mode) == 0o644 & ~_umask()
        assert os.fstat(tfd).st_nlink == 0 and not os.get_inheritable(tfd)
    finally:
        os.close(tfd)
    assert os.listdir(out) == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_place_unnamed_free_name_is_one_link_and_no_look(root, monkeypatch):
    out, fd = root
    links = _count(monkeypatch, os, "link")
    looks = _count(monkeypatch, os, "stat")
    assert _place(fd, b"one", "a.dcm", "replace") == ("a.dcm", None)
    assert len(links) == 1 and looks == []
    assert os.listdir(out) == ["a.dcm"] and (out / "a.dcm").read_bytes() == b"one"


def test_place_unnamed_replace_replaces_atomically_and_says_so(root, monkeypatch):
    out, fd = root
    _place(fd, b"one", "a.dcm", "replace")
    before = (out / "a.dcm").stat().st_ino
    assert _place(fd, b"two", "a.dcm", "replace") == ("a.dcm", "replaced")
    assert os.listdir(out) == ["a.dcm"] and (out / "a.dcm").read_bytes() == b"two"
    assert (out / "a.dcm").stat().st_ino != before  # a new file renamed over, not the old one rewritten


def test_place_unnamed_keep_keeps_the_first_and_frees_the_new(root):
    out, fd = root
    assert _place(fd, b"one", "a.dcm", "keep") == ("a.dcm", None)
    assert _place(fd, b"two", "a.dcm", "keep") == ("a.dcm", "kept")
    assert os.listdir(out) == ["a.dcm"] and (out / "a.dcm").read_bytes() == b"one"


def test_place_unnamed_rename_numbers_copies_and_gives_up(root, monkeypatch):
    out, fd = root
    monkeypatch.setattr(placement, "MAX_RENAME", 3)
    assert [_place(fd, b"%d" % n, "a.dcm", "rename") for n in range(3)] == [
        ("a.dcm", None), ("a_1.dcm", "renamed"), ("a_2.dcm", "renamed")]
    assert [(out / n).read_bytes() for n in ("a.dcm", "a_1.dcm", "a_2.dcm")] == [b"0", b"1", b"2"]
    with pytest.raises(OSError) as error:
        _place(fd, b"x", "a.dcm", "rename")
    assert error.value.errno == errno.EEXIST and "3 copies" in str(error.value)
    assert sorted(os.listdir(out)) == ["a.dcm", "a_1.dcm", "a_2.dcm"]


def test_place_unnamed_symlink_at_the_name_replaced_never_followed(root, tmp_path):
    out, fd = root
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (out / "a.dcm").symlink_to(victim)
    with pytest.raises(OSError, match="symlink or a folder"):
        _place(fd, b"x", "a.dcm", "keep")
    assert _place(fd, b"new", "a.dcm", "replace") == ("a.dcm", "replaced")
    assert not (out / "a.dcm").is_symlink() and (out / "a.dcm").read_bytes() == b"new"
    assert victim.read_bytes() == b"precious" and os.listdir(out) == ["a.dcm"]
    (out / "b.dcm").symlink_to(tmp_path / "nowhere")  # dangling: still taken, still replaced
    assert _place(fd, b"b", "b.dcm", "replace") == ("b.dcm", "replaced")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("policy", ["replace", "keep"])
def test_place_unnamed_onto_a_folder_raises_and_leaves_no_temporary(root, policy):
    out, fd = root
    (out / "a.dcm").mkdir()
    with pytest.raises(OSError):
        _place(fd, b"x", "a.dcm", policy)
    assert os.listdir(out) == ["a.dcm"] and (out / "a.dcm").is_dir()


def test_place_unnamed_replace_whose_rename_fails_removes_its_link(root, monkeypatch):
    out, fd = root
    _place(fd, b"one", "a.dcm", "replace")
    _refusing(monkeypatch, "replace", lambda *a, **k: True, errno.EIO)
    with pytest.raises(OSError) as error:
        _place(fd, b"two", "a.dcm", "replace")
    assert error.value.errno == errno.EIO
    assert os.listdir(out) == ["a.dcm"] and (out / "a.dcm").read_bytes() == b"one"


def test_place_unnamed_into_a_subfolder(root):
    out, fd = root
    sub = placement.open_folder(fd, "x/y")
    try:
        assert _place(fd, b"z", "a.dcm", "replace", sub) == ("a.dcm", None)
        assert _place(fd, b"w", "a.dcm", "replace", sub) == ("a.dcm", "replaced")
    finally:
        os.close(sub)
    assert (out / "x" / "y" / "a.dcm").read_bytes() == b"w" and sorted(os.listdir(out)) == ["x"]


def test_link_temp_names_it_in_the_root_locked_against_a_starting_cleanup(root):
    out, fd = root
    tfd = _unnamed(fd, b"x")
    try:
        name = link_temp(fd, tfd)
        assert name.startswith(TEMP_PREFIX) and os.listdir(out) == [name]
        assert clean_leftovers(str(out)) == 0 and (out / name).exists()  # held: not a leftover
        probe = os.open(out / name, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)
    finally:
        os.close(tfd)
    assert clean_leftovers(str(out)) == 1 and os.listdir(out) == []  # a crash's leftover: cleaned at start


def test_link_temp_moves_to_fresh_names_when_one_is_planted_and_gives_up_after_four(root):
    out, fd = root
    names_ = TempNames()
    planted = names_.next()
    names_.counter = iter(range(0, 10**6))
    (out / planted).write_bytes(b"planted")
    old_tag = names_.tag
    tfd = _unnamed(fd, b"x")
    try:
        name = link_temp(fd, tfd, names_)
        assert name != planted and (out / planted).read_bytes() == b"planted"
        assert names_.tag != old_tag  # someone plants our names: move to fresh random ones

        class Taken:
            def next(self):
                return planted

            def renew(self):
                pass

        with pytest.raises(FileExistsError):
            link_temp(fd, tfd, Taken())  # type: ignore[arg-type]
    finally:
        os.close(tfd)


# --------------------------------------------------------------------------- whether it works here

def test_unnamed_works_here_and_leaves_nothing(root, monkeypatch, tmp_path):
    out, fd = root
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()  # the probe is made in the output folder, never the working one (here removed)
    before = len(os.listdir("/proc/self/fd"))
    assert unnamed_works(fd) is True and os.listdir(out) == []
    assert len(os.listdir("/proc/self/fd")) == before
    monkeypatch.setattr(placement, "O_TMPFILE", 0)  # a Python or platform without it: not even tried
    opens = _count(monkeypatch, os, "open")
    assert unnamed_works(fd) is False and opens == []


@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL])
def test_unnamed_refused_by_the_filesystem_or_kernel(root, monkeypatch, code):
    out, fd = root
    _refusing(monkeypatch, "open", _is_tmpfile, code)
    assert unnamed_works(fd) is False and os.listdir(out) == []


@pytest.mark.parametrize("code", [errno.ENOENT, errno.EACCES, errno.EPERM, errno.EXDEV, errno.EOPNOTSUPP])
def test_unnamed_refused_when_linking_through_proc_fails(root, monkeypatch, code):
    out, fd = root
    before = len(os.listdir("/proc/self/fd"))
    _refusing(monkeypatch, "link", _through_proc, code)
    assert unnamed_works(fd) is False and os.listdir(out) == []
    assert len(os.listdir("/proc/self/fd")) == before  # the probe's descriptor closed


@pytest.mark.parametrize("call", ["open", "link"])
def test_unnamed_probe_other_errors_are_raised_undecided(root, monkeypatch, call):
    out, fd = root
    _refusing(monkeypatch, call, _is_tmpfile if call == "open" else _through_proc, errno.ENOSPC)
    with pytest.raises(OSError) as error:
        unnamed_works(fd)
    assert error.value.errno == errno.ENOSPC and os.listdir(out) == []


# --------------------------------------------------------------------------- the listener's choice, once

@pytest.mark.parametrize(("call", "code"), [("open", errno.EOPNOTSUPP), ("open", errno.EISDIR),
                                            ("link", errno.ENOENT), ("link", errno.EACCES)])
def test_fallback_to_named_temporaries_decided_once_per_output_folder(tmp_path, monkeypatch, call, code):
    """O_TMPFILE refused (NFS, an old kernel) or no ``/proc``: one failed probe, then named temporaries
    for every object, stored as usual; the output folder opened again (removed, made again) is probed again."""
    _refusing(monkeypatch, call, _is_tmpfile if call == "open" else _through_proc, code)
    tried = _count(monkeypatch, os, "open", _is_tmpfile)
    named = _count(monkeypatch, os, "open", lambda name, *a, **k: str(name).startswith(TEMP_PREFIX))
    node = Node(tmp_path / "out", on_duplicate="rename")
    items = [request("fallback-1"), request("fallback-2"), request("fallback-3")]
    assert [a.status for a in node.send(monkeypatch, items + items[:1])] == [0, 0, 0, 0]
    assert len(tried) == 1 and len(named) == 4
    assert on_disk(node.out) == sorted([f"{uid}.dcm" for _c, uid, _d in items] + [f"{items[0][1]}_1.dcm"])
    assert [e.duplicate for e in node.outcomes()] == [None, None, None, "renamed"]
    assert node.temporaries() == []
    shutil.rmtree(node.out)
    node.out.mkdir()
    assert [a.status for a in node.send(monkeypatch, [request("fallback-4")])] == [0]
    assert len(tried) == 2 and len(named) == 6  # one try in the removed folder, one in the new
    node.scp.close(0)


def test_unnamed_path_per_object_no_lock_no_look_no_rename(tmp_path, monkeypatch):
    """The point of it: a fresh object costs one O_TMPFILE open and one link, nothing else of the named
    path's (no flock, no stat of the final name, no rename, no temporary ever visible). The opens: one per
    object, and the next object's made after the last response (StorageSCP.make_spare), freed unused at
    the release."""
    node = Node(tmp_path / "out")
    node.send(monkeypatch, [request("fast-0")])  # the probe happened on this first one
    opens = _count(monkeypatch, os, "open", _is_tmpfile)
    links = _count(monkeypatch, os, "link")
    locks = _count(monkeypatch, fcntl, "flock")
    looks = _count(monkeypatch, os, "stat")
    renames = _count(monkeypatch, os, "replace")
    items = [request(f"fast-{n}") for n in range(1, 4)]
    assert [a.status for a in node.send(monkeypatch, items)] == [0, 0, 0]
    assert (len(opens), len(links), locks, looks, renames) == (3 + 1, 3, [], [], [])
    assert len(on_disk(node.out)) == 4 and node.temporaries() == [] and node.scp._active == set()


@pytest.mark.parametrize("temp_mode", MODES)
def test_probe_failing_with_a_full_disk_is_a700_and_decided_later(tmp_path, monkeypatch, temp_mode):
    use_mode(temp_mode, monkeypatch)
    real = os.open
    left = [1]

    def full_once(name, flags=0, *args, **kwargs):
        if left[0] and (_is_tmpfile(name, flags) or str(name).startswith(TEMP_PREFIX)):
            left[0] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", full_once)
    node = Node(tmp_path / "out")
    answers = node.send(monkeypatch, [request("full-1"), request("full-2")])
    assert [(a.status, a.error_comment) for a in answers] == [
        (0xA700, "cannot create file: No space left on device"), (0, None)]
    assert on_disk(node.out) == [f"{request('full-2')[1]}.dcm"] and node.temporaries() == []
    assert node.scp._unnamed is (temp_mode == "unnamed")


# --------------------------------------------------------------------------- the output folder removed

def _removing_root_before_placing(monkeypatch, node: Node, again: bool = True):
    """The output folder is removed (and made again) after the data set arrived, before it is placed;
    returns the real function, to put back."""
    real = store_handler.relative_path

    def removing(*args, **kwargs):
        shutil.rmtree(node.out)
        if again:
            node.out.mkdir()
        return real(*args, **kwargs)

    monkeypatch.setattr(store_handler, "relative_path", removing)
    return real


@pytest.mark.parametrize("temp_mode", MODES)
@pytest.mark.parametrize("template", [None, "{CallingAET}/{SOPInstanceUID}.dcm"])
def test_output_folder_removed_mid_object(tmp_path, monkeypatch, temp_mode, template):
    """An unnamed temporary belongs to no folder: it is linked into the output folder made again (Success);
    a named one went with the folder (0xA700). Either way nothing is left but what Success names."""
    from dcmnet_cli.part10.filenames import parse_template

    use_mode(temp_mode, monkeypatch)
    parsed = parse_template(template, lambda keyword: True) if template else None
    node = Node(tmp_path / "out", template=parsed)
    node.send(monkeypatch, [request("remade-0")])
    real = _removing_root_before_placing(monkeypatch, node)
    sop_class, uid, data = request("remade-1")
    (answer,) = node.send(monkeypatch, [(sop_class, uid, data)])
    monkeypatch.setattr(store_handler, "relative_path", real)
    name = f"MEMSCU/{uid}.dcm" if template else f"{uid}.dcm"
    if temp_mode == "unnamed":
        assert answer.status == 0 and on_disk(node.out) == [name]
        assert node.outcomes()[-1].path == str(Path(node.scp.root) / name)
    else:
        assert answer.status == 0xA700 and on_disk(node.out) == []
    assert [a.status for a in node.send(monkeypatch, [request("remade-2")])] == [0]  # and on it goes
    assert node.temporaries() == []
    node.scp.close(0)


@pytest.mark.parametrize("temp_mode", MODES)
def test_output_folder_removed_for_good_mid_object_is_a700(tmp_path, monkeypatch, temp_mode):
    use_mode(temp_mode, monkeypatch)
    node = Node(tmp_path / "out")
    node.send(monkeypatch, [request("gone-0")])
    _removing_root_before_placing(monkeypatch, node, again=False)
    (answer,) = node.send(monkeypatch, [request("gone-1")])
    assert (answer.status, answer.error_comment) == (0xA700, "cannot store file: No such file or directory")
    assert not node.out.exists()
    node.scp.close(0)


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs a tmpfs at /dev/shm")
def test_output_folder_on_tmpfs_removed_and_made_again_between_associations(monkeypatch):
    """On tmpfs an unnamed temporary can even be created in a removed folder: its link then fails, and
    the folder made again at the path is used (as when creating fails on ext4)."""
    import tempfile

    base = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="dcmnet-test-"))
    try:
        node = Node(base / "out")
        assert [a.status for a in node.send(monkeypatch, [request("shm-1")])] == [0]
        shutil.rmtree(node.out)
        node.out.mkdir()
        second = request("shm-2")
        assert [a.status for a in node.send(monkeypatch, [second])] == [0]
        assert on_disk(node.out) == [f"{second[1]}.dcm"] and node.temporaries() == []
        node.scp.close(0)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("temp_mode", MODES)
def test_symlinked_template_folder_is_refused_in_both_modes(tmp_path, monkeypatch, temp_mode):
    from dcmnet_cli.part10.filenames import parse_template

    use_mode(temp_mode, monkeypatch)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    node = Node(tmp_path / "out", template=parse_template("{CallingAET}/{SOPInstanceUID}.dcm", lambda k: True))
    (node.out / "MEMSCU").symlink_to(elsewhere)
    (answer,) = node.send(monkeypatch, [request("symlinked")])
    assert (answer.status, answer.error_comment) == (0xC000, "unsafe path: a folder on the way is a symlink")
    assert list(elsewhere.iterdir()) == [] and on_disk(node.out) == [] and node.temporaries() == []


def test_removed_tells_a_removed_folder(tmp_path):
    from dcmnet_cli.services.scp.storage import removed

    (tmp_path / "d").mkdir()
    fd = os.open(tmp_path / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert removed(fd) is False
        (tmp_path / "d").rmdir()
        assert removed(fd) is True
    finally:
        os.close(fd)
    assert removed(fd) is False  # not a descriptor any more: nothing known, nothing claimed


@pytest.mark.parametrize("temp_mode", MODES)
def test_descriptors_are_closed_after_stores_into_template_folders(tmp_path, monkeypatch, temp_mode):
    from dcmnet_cli.part10.filenames import parse_template

    use_mode(temp_mode, monkeypatch)
    node = Node(tmp_path / "out", template=parse_template("{CallingAET}/{SOPInstanceUID}.dcm", lambda k: True),
                on_duplicate="rename")
    node.send(monkeypatch, [request("fd-0")])
    before = len(os.listdir("/proc/self/fd"))
    item = request("fd-1")
    assert [a.status for a in node.send(monkeypatch, [item, item, request("fd-2")])] == [0, 0, 0]
    assert len(os.listdir("/proc/self/fd")) == before
    assert on_disk(node.out) == sorted(f"MEMSCU/{n}" for n in (f"{request('fd-0')[1]}.dcm", f"{item[1]}.dcm",
                                                                 f"{item[1]}_1.dcm", f"{request('fd-2')[1]}.dcm"))


# --------------------------------------------------------------------------- the real `dcmnet listen`, both paths

NAMED_PRELUDE = """
    from dcmnet_cli.services.scp import placement
    placement.O_TMPFILE = 0
"""


@pytest.mark.parametrize("temp_mode", MODES)
def test_listen_both_paths_duplicates_abort_and_nothing_left(tmp_path, temp_mode):
    """The real listener with unnamed temporaries (the default here) and with the fallback (O_TMPFILE
    missing): the same statuses, files, ``stored`` events and duplicates; an association aborted
    mid-data-set leaves no file and no temporary; the next association stores."""
    import json

    from helpers.patched import patched_listen
    from storage_helpers import (SC_IMAGE, associate, body, close_association, files, payload, raw_dataset,
                                 send_partial, store, temps, wait_until)

    out = tmp_path / "out"
    uid = "1.2.826.0.1.3680043.9.7781.88.1"
    first, second = raw_dataset(SC_IMAGE, uid, payload(1, 200_000)), raw_dataset(SC_IMAGE, uid, payload(2, 5000))
    prelude = NAMED_PRELUDE if temp_mode == "named" else ""
    with patched_listen(prelude, "--json", "-od", str(out), "--on-duplicate", "rename", "--no-index") as server:
        channel = associate(server.port)
        try:
            assert [store(channel, data, uid) for data in (first, second)] == [0, 0]
        finally:
            close_association(channel)
        channel = associate(server.port)
        send_partial(channel, raw_dataset(SC_IMAGE, uid + ".9", payload(3, 600_000)), uid + ".9", pdus=2)
        assert wait_until(lambda: len(temps(out)) == 1), "the aborted copy was never being written"
        (temporary,) = temps(out)  # named: .dcmnet-tmp-….part; unnamed: only its descriptor shows it, OUT/#inode
        assert temporary.name.startswith(TEMP_PREFIX if temp_mode == "named" else "#"), temporary
        channel.abort()
        assert wait_until(lambda: not temps(out)), temps(out)
        channel = associate(server.port)
        try:
            assert store(channel, raw_dataset(SC_IMAGE, uid + ".2"), uid + ".2") == 0
        finally:
            close_association(channel)
        assert wait_until(lambda: server.stdout().count('"stored"') >= 3), server.stdout()
        stdout = server.stdout()
    events = [e for e in map(json.loads, stdout.splitlines()) if e.get("event") == "stored"]
    assert [(e["path"], e.get("duplicate")) for e in events] == [
        (str(out / f"{uid}.dcm"), None), (str(out / f"{uid}_1.dcm"), "renamed"), (str(out / f"{uid}.2.dcm"), None)]
    assert sorted(p.name for p in files(out)) == [f"{uid}.2.dcm", f"{uid}.dcm", f"{uid}_1.dcm"]
    assert body(out / f"{uid}.dcm") == first and body(out / f"{uid}_1.dcm") == second
    assert not temps(out) and not [p for p in out.iterdir() if p.name.startswith(TEMP_PREFIX)]
