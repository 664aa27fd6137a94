"""The storage SCP's file placement, in-process (issue 15): placement.py as functions, and the C-STORE
handler over the in-memory wire with operating-system calls made to fail (monkeypatch). These are the
tests ``make mutate`` runs against services/scp/{placement,storage,store_handler}.py; the same faults
against the real ``dcmnet listen`` process are in tests/test_storage_failures.py.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

import pytest
from store_helpers import make_file
from temp_modes import MODES, creates_temporary, is_temporary, placing_call, use_mode
import temp_modes
from wire import memory_peer

from dcmnet_cli.part10.sopclasses import storage_contexts
from dcmnet_cli.services.peer import Peer
from dcmnet_cli.services.scp import placement
from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity
from dcmnet_cli.services.scp.placement import (TEMP_PREFIX, TempNames, clean_leftovers, create_temp, open_folder,
                                               open_root, place, sync_placed, write_all, writev_all)
from dcmnet_cli.services.scp.storage import StorageConfig, StorageSCP
from dcmnet_cli.services.scp.store_handler import storage_handlers
from dcmnet_cli.services.scu.store import store
from dcmnet_cli.services.scu.store_inputs import collect
from dcmnet_cli.transport.client import Timeouts
from dcmnet_cli.ul.negotiation import AcceptorPolicy

PEER = Peer("memory", 104, "MEMSCP")
TIMEOUTS = Timeouts(connect=5, acse=5, dimse=5, network=5)

root = temp_modes.root  # the fixture: (output folder, its descriptor)


@pytest.fixture(autouse=True, params=MODES)
def temp_mode(request, monkeypatch) -> str:
    """Every test runs with unnamed temporaries (O_TMPFILE) and with named ones (the fallback)."""
    return use_mode(request.param, monkeypatch)


def names(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if not p.name.startswith(".dcmnet-index"))


def _temp_with(root_fd: int, data: bytes) -> str:
    name, fd = create_temp(root_fd)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
    return name


# --------------------------------------------------------------------------- place()

def test_place_replace_renames_over_and_says_so(root):
    out, fd = root
    assert place(fd, _temp_with(fd, b"one"), fd, "a.dcm", "replace") == ("a.dcm", None)
    assert place(fd, _temp_with(fd, b"two"), fd, "a.dcm", "replace") == ("a.dcm", "replaced")
    assert names(out) == ["a.dcm"] and (out / "a.dcm").read_bytes() == b"two"


def test_place_keep_keeps_the_first_and_leaves_the_temporary(root):
    out, fd = root
    assert place(fd, _temp_with(fd, b"one"), fd, "a.dcm", "keep") == ("a.dcm", None)
    tmp = _temp_with(fd, b"two")
    assert place(fd, tmp, fd, "a.dcm", "keep") == ("a.dcm", "kept")
    assert (out / "a.dcm").read_bytes() == b"one" and (out / tmp).exists()  # the caller removes it


def test_place_rename_numbers_copies(root):
    out, fd = root
    for n in range(3):
        expected = ("a.dcm" if n == 0 else f"a_{n}.dcm", None if n == 0 else "renamed")
        assert place(fd, _temp_with(fd, b"%d" % n), fd, "a.dcm", "rename") == expected
    assert names(out) == ["a.dcm", "a_1.dcm", "a_2.dcm"]
    assert [(out / n).read_bytes() for n in names(out)] == [b"0", b"1", b"2"]


def test_place_rename_without_extension_and_gives_up(root, monkeypatch):
    out, fd = root
    monkeypatch.setattr(placement, "MAX_RENAME", 3)
    for _ in range(3):
        place(fd, _temp_with(fd, b"x"), fd, "noext", "rename")
    assert names(out) == ["noext", "noext_1", "noext_2"]
    tmp = _temp_with(fd, b"y")
    with pytest.raises(OSError) as error:
        place(fd, tmp, fd, "noext", "rename")
    assert error.value.errno == errno.EEXIST and "3 copies" in str(error.value)


@pytest.mark.parametrize("policy", ["replace", "keep"])
def test_place_onto_a_folder_raises(root, policy):
    out, fd = root
    (out / "a.dcm").mkdir()
    with pytest.raises(OSError):
        place(fd, _temp_with(fd, b"x"), fd, "a.dcm", policy)
    assert (out / "a.dcm").is_dir()


def test_place_keep_refuses_a_symlink_and_replace_replaces_it(root, tmp_path):
    out, fd = root
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (out / "a.dcm").symlink_to(victim)
    with pytest.raises(OSError, match="symlink or a folder"):
        place(fd, _temp_with(fd, b"x"), fd, "a.dcm", "keep")
    assert place(fd, _temp_with(fd, b"new"), fd, "a.dcm", "replace") == ("a.dcm", "replaced")
    assert not (out / "a.dcm").is_symlink() and victim.read_bytes() == b"precious"


def test_place_into_a_subfolder(root):
    out, fd = root
    sub = open_folder(fd, "x/y")
    try:
        assert place(fd, _temp_with(fd, b"z"), sub, "a.dcm", "replace") == ("a.dcm", None)
    finally:
        os.close(sub)
    assert [n for n in names(out) if n.endswith(".dcm")] == ["x/y/a.dcm"]


# --------------------------------------------------------------------------- folders, temporaries

def test_open_folder_creates_and_refuses_symlinks_and_files(root, tmp_path):
    out, fd = root
    os.close(open_folder(fd, "a/b/c"))
    assert (out / "a" / "b" / "c").is_dir()
    os.close(open_folder(fd, "a/b/c"))  # existing: opened again
    (out / "link").symlink_to(tmp_path)
    with pytest.raises(OSError) as error:
        open_folder(fd, "link/x")
    assert error.value.errno in (errno.ELOOP, errno.ENOTDIR)  # O_NOFOLLOW | O_DIRECTORY on a symlink
    (out / "file").write_bytes(b"")
    with pytest.raises(OSError) as error:
        open_folder(fd, "file/x")
    assert error.value.errno == errno.ENOTDIR
    assert not (tmp_path / "x").exists()


def test_create_temp_is_locked_private_and_in_the_root(root):
    out, fd = root
    name, tfd = create_temp(fd)
    try:
        assert name.startswith(TEMP_PREFIX) and name.endswith(".part")
        assert stat.S_IMODE(os.fstat(tfd).st_mode) == 0o644
        probe = os.open(out / name, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)
        assert clean_leftovers(str(out)) == 0 and (out / name).exists()  # held: not a leftover
    finally:
        os.close(tfd)
    assert clean_leftovers(str(out)) == 1 and not (out / name).exists()


def test_create_temp_moves_to_fresh_names_when_one_is_planted(root):
    out, fd = root
    names_ = TempNames()
    planted = names_.next()
    names_.counter = iter(range(0, 10**6))  # restart: the next name is the planted one
    (out / planted).write_bytes(b"planted")
    old_tag = names_.tag
    name, tfd = create_temp(fd, names_)
    os.close(tfd)
    assert name != planted and names_.tag != old_tag
    assert (out / planted).read_bytes() == b"planted"


def test_create_temp_gives_up_after_four_clashes(root, monkeypatch):
    _out, fd = root

    class Taken:
        def next(self):
            return "taken.part"

        def renew(self):
            pass

    (Path(_out) / "taken.part").write_bytes(b"")
    with pytest.raises(FileExistsError):
        create_temp(fd, Taken())  # type: ignore[arg-type]


def test_clean_leftovers_scope(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / f"{TEMP_PREFIX}a.part").write_bytes(b"x")
    (out / f"{TEMP_PREFIX}b.part").symlink_to(tmp_path / "elsewhere")
    (out / f"{TEMP_PREFIX}dir.part").mkdir()
    (out / f"{TEMP_PREFIX}c.txt").write_bytes(b"x")
    (out / "sub" / f"{TEMP_PREFIX}d.part").write_bytes(b"x")
    fds = sorted(os.listdir("/proc/self/fd"))
    assert clean_leftovers(str(out)) == 2
    assert sorted(os.listdir("/proc/self/fd")) == fds  # every descriptor it opened closed, and only those
    assert sorted(p.name for p in out.iterdir()) == [f"{TEMP_PREFIX}c.txt", f"{TEMP_PREFIX}dir.part", "sub"]
    assert clean_leftovers(str(tmp_path / "missing")) == 0


# --------------------------------------------------------------------------- complete writes

def test_write_all_loops_on_short_writes(root, monkeypatch):
    out, fd = root
    real = os.write
    monkeypatch.setattr(os, "write", lambda f, data: real(f, bytes(data)[:3]))
    name, tfd = create_temp(fd)
    try:
        write_all(tfd, b"0123456789")
        monkeypatch.setattr(os, "writev", lambda f, bufs: real(f, bytes(bufs[0])[:2]))
        writev_all(tfd, b"abcde", b"vwxyz")
    finally:
        os.close(tfd)
    assert (out / name).read_bytes() == b"0123456789abcdevwxyz"


def test_write_all_refuses_a_write_that_writes_nothing(root, monkeypatch):
    _out, fd = root
    calls = []

    def stuck(f, data):
        calls.append(len(data))
        return 1 if len(calls) == 1 else 0

    monkeypatch.setattr(os, "write", stuck)
    with pytest.raises(OSError) as error:
        write_all(fd, b"abc")
    assert error.value.errno == errno.EIO


def test_writev_all_when_the_first_buffer_is_whole(root, monkeypatch):
    out, fd = root
    real = os.write
    monkeypatch.setattr(os, "writev", lambda f, bufs: real(f, bytes(bufs[0]) + bytes(bufs[1])[:1]))
    name, tfd = create_temp(fd)
    try:
        writev_all(tfd, b"head", b"body")
    finally:
        os.close(tfd)
    assert (out / name).read_bytes() == b"headbody"


# --------------------------------------------------------------------------- the C-STORE handler, in memory

def _entity(out: Path, events: list, **config) -> tuple[ApplicationEntity, StorageSCP]:
    scp = StorageSCP(StorageConfig(str(out), **config), events.append)
    scp.prepare()
    policy = AcceptorPolicy(ae_title="MEMSCP", contexts=storage_contexts(ALL_UNCOMPRESSED, False, ALL_UNCOMPRESSED))
    return ApplicationEntity(policy, handlers=storage_handlers(scp), on_event=events.append), scp


def _store(tmp_path: Path, monkeypatch, out: Path, count: int = 1, big: bool = False,
           **config) -> tuple[list, list, StorageSCP]:
    size = {"rows": 256, "columns": 256, "frames": 4} if big else {}  # 512 KiB: several fragments
    sources = [make_file(tmp_path / "in", f"unit-{n}", **size) for n in range(count)]
    files, problems = collect([str(s) for s in sources])
    assert not problems
    events: list = []
    ae, scp = _entity(out, events, **config)
    with memory_peer(ae, monkeypatch) as failures:
        result = store(PEER, files, "MEMSCU", TIMEOUTS)
    assert not failures
    return [o.status for o in result.files], events, scp


def _count_fsync(monkeypatch) -> list[str]:
    from helpers.patched import count_fsync

    return count_fsync(monkeypatch)


def test_fsync_file_and_folder_by_default(tmp_path, monkeypatch):
    calls = _count_fsync(monkeypatch)
    statuses, events, scp = _store(tmp_path, monkeypatch, tmp_path / "out", 2)
    assert statuses == [0, 0]
    assert sorted(calls) == ["dir", "dir", "file", "file"]
    assert scp.totals.stored == 2 and scp.totals.failed == 0 and scp.totals.bytes > 0
    assert [e.event for e in events].count("stored") == 2


def test_no_fsync_with_fsync_off(tmp_path, monkeypatch):
    calls = _count_fsync(monkeypatch)
    statuses, _events, _scp = _store(tmp_path, monkeypatch, tmp_path / "out", 2, fsync=False)
    assert statuses == [0, 0] and calls == []


FAULTS = {
    # the link (unnamed) or the rename (named) to the final name; not the unnamed path's probe
    "place": (None, lambda *a, **k: "dst_dir_fd" in k and not str(a[1]).startswith(TEMP_PREFIX)),
    "fsync-file": ("fsync", lambda fd: stat.S_ISREG(os.fstat(fd).st_mode)),
    "fsync-dir": ("fsync", lambda fd: stat.S_ISDIR(os.fstat(fd).st_mode)),
    "write": ("write", lambda fd, data: is_temporary(fd)),
    "writev": ("writev", lambda fd, bufs: True),
    "temp": ("open", creates_temporary),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_failing_os_call_answers_a700_and_leaves_no_temporary(tmp_path, monkeypatch, fault, temp_mode):
    name, when = FAULTS[fault]
    name = name or placing_call(temp_mode)
    real = getattr(os, name)

    def failing(*args, **kwargs):
        if when(*args, **kwargs):
            raise OSError(errno.ENOSPC, "injected")
        return real(*args, **kwargs)

    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(os, name, failing)
    statuses, events, scp = _store(tmp_path, monkeypatch, out, big=fault == "write")
    monkeypatch.undo()
    assert statuses == [0xA700]
    assert names(out) == []  # also after the rename (fsync-dir): the placed file is removed again
    assert scp.totals.failed == 1 and scp.totals.stored == 0
    failed = [e for e in events if e.event == "store-failed"]
    assert len(failed) == 1 and failed[0].path is None and failed[0].status == "0xA700"
    assert "injected" in (failed[0].detail or "")


@pytest.mark.parametrize("policy", ["replace", "keep", "rename"])
def test_folder_at_the_final_name(tmp_path, monkeypatch, policy):
    out = tmp_path / "out"
    out.mkdir()
    source = make_file(tmp_path / "in", "unit-0")
    from pydicom import dcmread

    uid = dcmread(source, stop_before_pixels=True).SOPInstanceUID
    (out / f"{uid}.dcm").mkdir()
    statuses, events, _scp = _store(tmp_path, monkeypatch, out, on_duplicate=policy)
    if policy == "rename":
        assert statuses == [0] and names(out) == [f"{uid}.dcm", f"{uid}_1.dcm"]
        assert [e.duplicate for e in events if e.event == "stored"] == ["renamed"]
    else:
        assert statuses == [0xA700] and names(out) == [f"{uid}.dcm"]


def test_ignore_stores_nothing(tmp_path, monkeypatch):
    statuses, events, scp = _store(tmp_path, monkeypatch, tmp_path / "out", 2, ignore=True)
    assert statuses == [0, 0]
    assert not (tmp_path / "out").exists() or names(tmp_path / "out") == []
    assert [e.event for e in events].count("received") == 2 and scp.totals.stored == 2


def test_template_folder_removed_between_open_and_rename_is_retried_once(tmp_path, monkeypatch, temp_mode):
    """A folder removed between its opening and the rename or link (ENOENT) is opened again, once."""
    from dcmnet_cli.part10.filenames import parse_template

    out = tmp_path / "out"
    template = parse_template("{CallingAET}/{SOPInstanceUID}.dcm", lambda keyword: True)
    call = placing_call(temp_mode)
    real = getattr(os, call)
    calls = []

    def vanishing(src, dst, **kwargs):
        if "dst_dir_fd" not in kwargs or str(dst).startswith(TEMP_PREFIX):  # not the unnamed path's probe
            return real(src, dst, **kwargs)
        calls.append(dst)
        if len(calls) == 1:
            raise FileNotFoundError(errno.ENOENT, "folder removed meanwhile")
        return real(src, dst, **kwargs)

    monkeypatch.setattr(os, call, vanishing)
    statuses, _events, _scp = _store(tmp_path, monkeypatch, out, template=template)
    assert statuses == [0] and len(calls) == 2
    assert [n for n in names(out) if n.endswith(".dcm")][0].startswith("MEMSCU/")


def test_folder_removed_twice_is_a_failure(tmp_path, monkeypatch, temp_mode):
    from dcmnet_cli.part10.filenames import parse_template

    out = tmp_path / "out"
    template = parse_template("{CallingAET}/{SOPInstanceUID}.dcm", lambda keyword: True)
    call = placing_call(temp_mode)
    real = getattr(os, call)

    def vanishing(src, dst, **kwargs):
        if "dst_dir_fd" in kwargs and not str(dst).startswith(TEMP_PREFIX):
            raise FileNotFoundError(errno.ENOENT, "folder removed meanwhile")
        return real(src, dst, **kwargs)

    monkeypatch.setattr(os, call, vanishing)
    statuses, _events, _scp = _store(tmp_path, monkeypatch, out, template=template)
    assert statuses == [0xA700]
    assert not [n for n in names(out) if n.endswith(".dcm") or n.startswith(TEMP_PREFIX)]


# --------------------------------------------------------------------------- what `make mutate` found

def test_replacing_a_dangling_symlink_says_replaced(root, tmp_path):
    out, fd = root
    (out / "a.dcm").symlink_to(tmp_path / "nowhere")
    assert place(fd, _temp_with(fd, b"x"), fd, "a.dcm", "replace") == ("a.dcm", "replaced")
    assert not (out / "a.dcm").is_symlink() and (out / "a.dcm").read_bytes() == b"x"


def test_clean_leftovers_never_opens_a_fifo_for_reading_blocked(tmp_path):
    """A FIFO carrying a temporary's name (planted by another local user) must not hang start-up: it is
    opened non-blocking, found not to be a regular file, and left alone."""
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / f"{TEMP_PREFIX}fifo.part")
    assert clean_leftovers(str(out)) == 0
    assert stat.S_ISFIFO(os.lstat(out / f"{TEMP_PREFIX}fifo.part").st_mode)


def test_open_root_is_a_directory_not_inherited_by_hooks(tmp_path):
    fd = open_root(str(tmp_path))
    try:
        assert stat.S_ISDIR(os.fstat(fd).st_mode) and not os.get_inheritable(fd)
    finally:
        os.close(fd)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        os.close(open_root(str(tmp_path / "file")))


def test_open_folder_creates_folders_0755_whatever_the_umask(root):
    out, fd = root
    old = os.umask(0)
    try:
        os.close(open_folder(fd, "p/q"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((out / "p").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "p" / "q").stat().st_mode) == 0o755


def test_open_folder_failing_deeper_raises_the_os_error_and_closes_what_it_opened(root):
    out, fd = root
    (out / "a").mkdir()
    (out / "a" / "file").write_bytes(b"")
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(NotADirectoryError):
        open_folder(fd, "a/file/x")
    assert len(os.listdir("/proc/self/fd")) == before


def test_temporary_names_carry_the_node_and_leftovers_of_other_nodes_stay(tmp_path, monkeypatch):
    """``listen --node-id``: .dcmnet-tmp-<node>~… are ours; another node's are never touched; without a
    node identity, names with a node are left alone."""
    names_ = TempNames()
    assert "~" not in names_.next()
    names_.node = "n1"
    assert names_.next().startswith(f"{TEMP_PREFIX}n1~")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("n1~a-0", "n2~b-0", "plain-0"):
        (out / f"{TEMP_PREFIX}{name}.part").write_bytes(b"x")
    assert clean_leftovers(str(out), "n1") == 2  # ours and the node-less one
    assert sorted(p.name for p in out.iterdir()) == [f"{TEMP_PREFIX}n2~b-0.part"]
    monkeypatch.setattr(placement.TEMP_NAMES, "node", None)
    assert clean_leftovers(str(out)) == 0  # no node identity: another node's name is not ours
    monkeypatch.setattr(placement.TEMP_NAMES, "node", "n2")
    assert clean_leftovers(str(out)) == 1 and list(out.iterdir()) == []


def test_temp_tag_is_64_random_bits():
    names_ = TempNames()
    tag = names_.next()[len(TEMP_PREFIX):].split("-")[0]
    assert len(tag) == 16 and int(tag, 16) >= 0


@pytest.mark.parametrize(("planted", "status", "words"), [
    ("symlink", 0xC000, "unsafe path"), ("file", 0xC000, "unsafe path"), ("unwritable", 0xA700, "cannot create folder")])
def test_storage_open_folder_maps_errors_to_statuses(tmp_path, monkeypatch, planted, status, words):
    """A symlink or a file on a template folder's way is 0xC000 "unsafe path"; another error (the folder
    cannot be created) 0xA700 with the reason."""
    from dcmnet_cli.services.scp.naming import StoreFailure

    scp = StorageSCP(StorageConfig(str(tmp_path / "out")), lambda event: None)
    scp.prepare()
    out = Path(scp.root)
    if planted == "symlink":
        (out / "a").symlink_to(tmp_path)
    elif planted == "file":
        (out / "a").write_bytes(b"")
    else:
        def refuse(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")
        monkeypatch.setattr(os, "mkdir", refuse)
    fd = open_root(scp.root)
    try:
        with pytest.raises(StoreFailure) as failure:
            scp.open_folder(fd, "a/b")
    finally:
        os.close(fd)
    assert failure.value.status == status and words in failure.value.comment
    if planted == "unwritable":
        assert failure.value.comment == "cannot create folder: Permission denied"
    else:
        assert failure.value.comment == "unsafe path: a folder on the way is a symlink"
    assert not (tmp_path / "b").exists()


def test_storage_open_folder_returns_the_folder(tmp_path):
    scp = StorageSCP(StorageConfig(str(tmp_path / "out")), lambda event: None)
    scp.prepare()
    fd = open_root(scp.root)
    try:
        sub = scp.open_folder(fd, "x/y")
        assert stat.S_ISDIR(os.fstat(sub).st_mode) and os.path.samestat(os.fstat(sub), os.stat(Path(scp.root) / "x" / "y"))
        os.close(sub)
    finally:
        os.close(fd)


def test_storage_totals_count_each_outcome():
    from dcmnet_cli.services.scp.storage import StorageTotals

    totals = StorageTotals()
    totals.add(True, 10)
    totals.add(True, 5)
    totals.add(False, 99)
    totals.add(False, 1)
    assert (totals.stored, totals.failed, totals.bytes) == (2, 2, 15)


# --------------------------------------------------------------------------- a failed folder fsync (issue 15)

def _fsync_failing(monkeypatch, times: int) -> list[str]:
    """os.fsync of a folder fails ``times`` times (EIO), then works; returns the calls ("dir"/"file")."""
    calls: list[str] = []
    real = os.fsync

    def fsync(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        calls.append(kind)
        if kind == "dir" and calls.count("dir") <= times:
            raise OSError(errno.EIO, "injected")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_sync_placed_removes_our_entry_and_syncs_again_when_the_folder_fsync_fails(root, monkeypatch):
    out, fd = root
    (out / "a.dcm").write_bytes(b"x")
    calls = _fsync_failing(monkeypatch, 1)
    with pytest.raises(OSError, match="injected"):
        sync_placed(fd, "a.dcm", True)
    assert names(out) == [] and calls == ["dir", "dir"]  # removed, and the removal made durable


def test_sync_placed_keeps_an_older_file_that_was_kept(root, monkeypatch):
    out, fd = root
    (out / "a.dcm").write_bytes(b"old")
    calls = _fsync_failing(monkeypatch, 1)
    with pytest.raises(OSError, match="injected"):
        sync_placed(fd, "a.dcm", False)
    assert names(out) == ["a.dcm"] and calls == ["dir"]


def test_sync_placed_raises_the_fsync_error_even_when_the_removal_fails(root, monkeypatch):
    out, fd = root
    _fsync_failing(monkeypatch, 5)
    with pytest.raises(OSError, match="injected"):
        sync_placed(fd, "gone.dcm", True)  # nothing to remove (ENOENT): still the fsync's error
    (out / "b.dcm").write_bytes(b"x")
    with pytest.raises(OSError, match="injected"):
        sync_placed(fd, "b.dcm", True)  # the second fsync fails too: removed anyway, the first error raised
    assert names(out) == []


def test_sync_placed_once_when_it_works(root, monkeypatch):
    out, fd = root
    (out / "a.dcm").write_bytes(b"x")
    calls = _fsync_failing(monkeypatch, 0)
    sync_placed(fd, "a.dcm", True)
    assert names(out) == ["a.dcm"] and calls == ["dir"]


@pytest.mark.parametrize("policy", ["replace", "rename", "keep"])
def test_failed_folder_fsync_leaves_nothing_under_a_final_name_and_a_retry_stores_one_copy(tmp_path, monkeypatch,
                                                                                         policy):
    """C-STORE answered 0xA700 when the folder's fsync fails after the rename: the placed file is removed
    (status and disk agree), so the sender's retry lands one copy, not NAME_1.dcm beside it. When the
    name held an earlier object (``keep``: kept; ``replace``: renamed over), the file there stays."""
    from dcmnet_cli.part10.filenames import parse_template

    out = tmp_path / "out"
    template = parse_template("{CallingAET}/{SOPInstanceUID}.dcm", lambda keyword: True)
    _fsync_failing(monkeypatch, 1)
    statuses, events, scp = _store(tmp_path, monkeypatch, out, on_duplicate=policy, template=template)
    assert statuses == [0xA700] and names(out) == ["MEMSCU"]
    assert [e.status for e in events if e.event == "store-failed"] == ["0xA700"]
    statuses, events, scp = _store(tmp_path, monkeypatch, out, on_duplicate=policy, template=template)
    assert statuses == [0] and len([n for n in names(out) if n.endswith(".dcm")]) == 1
    if policy == "rename":  # a numbered copy (NAME_1) put at a free name: removed again
        _fsync_failing(monkeypatch, 1)
        statuses, _events, _scp = _store(tmp_path, monkeypatch, out, on_duplicate=policy, template=template)
        assert statuses == [0xA700] and len([n for n in names(out) if n.endswith(".dcm")]) == 1
    if policy in ("keep", "replace"):
        # the name held an earlier object: never removed (with replace, the earlier object was renamed over)
        _fsync_failing(monkeypatch, 1)
        statuses, _events, _scp = _store(tmp_path, monkeypatch, out, on_duplicate=policy, template=template)
        assert statuses == [0xA700] and len([n for n in names(out) if n.endswith(".dcm")]) == 1
        assert not [n for n in names(out) if TEMP_PREFIX in n]


def test_template_folders_are_opened_below_the_output_folder_never_the_working_one(tmp_path, monkeypatch):
    """A folder of the working directory named like a template folder is never used: every component is
    opened relative to its parent's descriptor, starting at the output folder's."""
    from dcmnet_cli.part10.filenames import parse_template

    cwd = tmp_path / "cwd"
    (cwd / "MEMSCU").mkdir(parents=True)
    monkeypatch.chdir(cwd)
    out = tmp_path / "out"
    template = parse_template("{CallingAET}/{SOPInstanceUID}.dcm", lambda keyword: True)
    statuses, _events, _scp = _store(tmp_path, monkeypatch, out, template=template)
    assert statuses == [0]
    assert [n for n in names(out) if n.endswith(".dcm")][0].startswith("MEMSCU/")
    assert list((cwd / "MEMSCU").iterdir()) == []
