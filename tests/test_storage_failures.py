"""Failures after the data set has arrived, provoked for real (issue 15): each one must answer a Failure
status, leave nothing under a final name and no temporary behind, and the association must go on.

The listener is the real ``dcmnet listen`` process. Faults are either real file-system states (a folder
at the final name, a folder that refuses new entries, the output folder removed mid-store) or one
operating-system call made to fail inside the listener (``tests/helpers/patched.py``: ``os.replace``,
``os.link``, ``os.fsync`` raise OSError). ``fsync`` is also counted: called for the file and its folder by
default, never with ``--no-fsync``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.patched import patched_listen, raising
from helpers.procs import listen_server
from storage_helpers import (
    SC_IMAGE,
    associate,
    body,
    close_association,
    payload,
    raw_dataset,
    send_partial,
    send_rest,
    store,
    temps,
    wait_until,
)

def files(root: Path) -> list[Path]:
    """Every file below ``root`` but the listener's index (``.dcmnet-index.sqlite*``, issue 11)."""
    from storage_helpers import files as all_files

    return [p for p in all_files(root) if not p.name.startswith(".dcmnet-index")]


BIG = 600_000  # several P-DATA PDUs
UID = "1.2.826.0.1.3680043.9.7781.15."


def _store_fails_then_recovers(server, out: Path, uid: str, expected: int = 0xA700, check_after=None) -> None:
    """One store answered ``expected``, then (after ``check_after``) a store under another name succeeds."""
    channel = associate(server.port)
    try:
        assert store(channel, raw_dataset(SC_IMAGE, uid, payload(1, BIG)), uid) == expected
        if check_after is not None:
            check_after()
        assert store(channel, raw_dataset(SC_IMAGE, uid + ".9"), uid + ".9") == 0
    finally:
        close_association(channel)


# --------------------------------------------------------------------------- real file-system states

@pytest.mark.parametrize("policy", ["replace", "keep"])
def test_folder_at_the_final_name_is_a_failure(tmp_path, policy):
    """A folder where the file must go: 0xA700, the folder untouched, no temporary (was answered
    Success with nothing stored when the rename error was swallowed)."""
    out = tmp_path / "out"
    uid = UID + "1"
    (out / f"{uid}.dcm").mkdir(parents=True)
    (out / f"{uid}.dcm" / "inside").write_bytes(b"x")
    with listen_server("-od", str(out), "--on-duplicate", policy) as server:
        _store_fails_then_recovers(server, out, uid)
        assert server.wait_for_stderr("0xA700"), server.stderr()
    assert (out / f"{uid}.dcm").is_dir() and [p.name for p in (out / f"{uid}.dcm").iterdir()] == ["inside"]
    assert sorted(p.relative_to(out).as_posix() for p in files(out)) == sorted([f"{uid}.dcm/inside", f"{uid}.9.dcm"])
    assert not temps(out)


def _make_unwritable(folder: Path) -> str:
    """Make ``folder`` refuse new entries: chmod for a normal user; as root (whom permissions do not stop)
    the immutable attribute. Returns how, for the clean-up; skips where neither works."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return "chmod"
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"running as root and chattr +i does not work here: {done.stderr.strip()}")
    return "chattr"


def _restore(folder: Path, how: str) -> None:
    if how == "chattr":
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    else:
        folder.chmod(0o755)


def test_read_only_template_folder_is_a_failure(tmp_path):
    """The data set arrives (written to the temporary in the output folder), then the move into a
    template folder that refuses new entries fails: 0xA700, nothing in the folder, no temporary."""
    out = tmp_path / "out"
    locked = out / "RAWSCU"
    locked.mkdir(parents=True)
    how = _make_unwritable(locked)
    try:
        with listen_server("-od", str(out), "--filepath", "{CallingAET}/{SOPInstanceUID}.dcm") as server:
            channel = associate(server.port)
            try:
                assert store(channel, raw_dataset(SC_IMAGE, UID + "2", payload(2, BIG)), UID + "2") == 0xA700
                assert not temps(out)
            finally:
                close_association(channel)
    finally:
        _restore(locked, how)
    assert files(out) == []
    assert not temps(out)


def test_read_only_output_folder_is_a_failure(tmp_path):
    """An output folder that refuses new entries: no temporary can be made, 0xA700, nothing written."""
    out = tmp_path / "out"
    out.mkdir()
    uid = UID + "3"
    with listen_server("-od", str(out)) as server:
        how = _make_unwritable(out)
        try:
            channel = associate(server.port)
            try:
                assert store(channel, raw_dataset(SC_IMAGE, uid, payload(3, BIG)), uid) == 0xA700
            finally:
                close_association(channel)
        finally:
            _restore(out, how)
        channel = associate(server.port)  # writable again: the listener recovers
        try:
            assert store(channel, raw_dataset(SC_IMAGE, uid + ".9"), uid + ".9") == 0
        finally:
            close_association(channel)
    assert [p.name for p in files(out)] == [f"{uid}.9.dcm"]


def test_output_folder_removed_mid_store_is_a_failure(tmp_path):
    """The output folder (with the half-written temporary in it) is removed while the data set is still
    arriving: the rest arrives, the rename finds nothing, 0xA700; no final name appears anywhere."""
    out = tmp_path / "out"
    uid = UID + "4"
    data = raw_dataset(SC_IMAGE, uid, payload(4, BIG))
    with listen_server("-od", str(out)) as server:
        channel = associate(server.port)
        try:
            send_partial(channel, data, uid, pdus=2)
            assert wait_until(lambda: len(temps(out)) == 1)
            shutil.rmtree(out)
            send_rest(channel, data, uid, pdus=2)
            from storage_helpers import wait_response
            assert wait_response(channel).status == 0xA700
            assert not out.exists() or files(out) == []
            out.mkdir()
            assert store(channel, raw_dataset(SC_IMAGE, uid + ".9"), uid + ".9") == 0
        finally:
            close_association(channel)
    assert [p.name for p in files(out)] == [f"{uid}.9.dcm"]


def test_template_folder_removed_mid_store_is_created_again(tmp_path):
    """A template folder removed while a data set is arriving is created again (one retry): Success, and
    the file is whole under its final name."""
    out = tmp_path / "out"
    uid = UID + "5"
    data = raw_dataset(SC_IMAGE, uid, payload(5, BIG))
    with listen_server("-od", str(out), "--filepath", "{CallingAET}/{SOPInstanceUID}.dcm") as server:
        channel = associate(server.port)
        try:
            assert store(channel, raw_dataset(SC_IMAGE, uid + ".0"), uid + ".0") == 0
            send_partial(channel, data, uid, pdus=2)
            assert wait_until(lambda: len(temps(out)) == 1)
            shutil.rmtree(out / "RAWSCU")
            send_rest(channel, data, uid, pdus=2)
            from storage_helpers import wait_response
            assert wait_response(channel).status == 0
        finally:
            close_association(channel)
    assert [p.relative_to(out).as_posix() for p in files(out)] == [f"RAWSCU/{uid}.dcm"]
    assert body(out / "RAWSCU" / f"{uid}.dcm") == data


# --------------------------------------------------------------------------- one OS call made to fail

IS_DIR = "__import__('stat').S_ISDIR(os.fstat(args[0]).st_mode)"
IS_FILE = "__import__('stat').S_ISREG(os.fstat(args[0]).st_mode)"
PLACING = "'dst_dir_fd' in kw and '.dcmnet-tmp-' not in str(args[1])"  # to a final name (not the O_TMPFILE probe)
NAMED = """
        from dcmnet_cli.services.scp import placement
        placement.O_TMPFILE = 0  # the fallback: named temporaries, renamed
"""
FAULTS = {
    "rename": (NAMED + raising("replace", PLACING), "replace"),
    "rename-ENOSPC": (NAMED + raising("replace", PLACING, "ENOSPC"), "replace"),
    "link-replace": (raising("link", PLACING), "replace"),
    "link-keep": (raising("link", PLACING), "keep"),
    "link-rename": (raising("link", PLACING), "rename"),
    "fsync-file": (raising("fsync", IS_FILE), "replace"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_failing_os_call_after_the_data_arrived(tmp_path, fault):
    """rename, link or the file's fsync raises inside the listener: 0xA700 (never Success), nothing
    under a final name, no temporary; the listener logs the failure."""
    prelude, policy = FAULTS[fault]
    out = tmp_path / "out"
    uid = UID + "6"
    with patched_listen(prelude, "--json", "-od", str(out), "--on-duplicate", policy) as server:
        channel = associate(server.port)
        try:
            assert store(channel, raw_dataset(SC_IMAGE, uid, payload(6, BIG)), uid) == 0xA700
            assert store(channel, raw_dataset(SC_IMAGE, uid + ".1"), uid + ".1") == 0xA700
        finally:
            close_association(channel)
        assert wait_until(lambda: "injected" in server.stdout()), server.stdout() + server.stderr()
    assert files(out) == []
    assert not temps(out)


FILLS_UP = """
    import errno, os
    def _temporary(fd):
        link = os.readlink("/proc/self/fd/%d" % fd)
        return link.rsplit("/", 1)[-1].startswith(".dcmnet-tmp-") or link.endswith(" (deleted)")  # or O_TMPFILE
    def _full(fd):
        return _temporary(fd) and os.fstat(fd).st_size > 1_000_000
    for _name in ("write", "writev"):
        def _wrap(real):
            def call(fd, *args):
                if _full(fd):
                    raise OSError(errno.ENOSPC, "No space left on device (injected)")
                return real(fd, *args)
            return call
        setattr(os, _name, _wrap(getattr(os, _name)))
"""


def test_disk_full_mid_write_without_root(tmp_path):
    """A disk that fills up mid-data-set (writes past 1 MB fail with ENOSPC; no root or tmpfs needed):
    0xA700, the temporary removed, nothing under the final name; a small object afterwards is stored."""
    out = tmp_path / "out"
    uid = UID + "11"
    with patched_listen(FILLS_UP, "-od", str(out), "--no-fsync") as server:
        channel = associate(server.port)
        try:
            assert store(channel, raw_dataset(SC_IMAGE, uid, payload(11, 3_000_000)), uid) == 0xA700
            assert not temps(out)
            assert store(channel, raw_dataset(SC_IMAGE, uid + ".1", b"small"), uid + ".1") == 0
        finally:
            close_association(channel)
        assert server.wait_for_stderr("No space left"), server.stderr()
    assert [p.name for p in files(out)] == [f"{uid}.1.dcm"]


@pytest.mark.parametrize("policy", ["replace", "rename"])
def test_failing_folder_fsync_leaves_nothing_placed_and_a_retry_lands_one_copy(tmp_path, policy):
    """The folder's fsync fails after the rename: the entry may not survive a power cut, so the answer
    is 0xA700, not Success; and a failure means nothing under the final name (the placed file is removed
    again) and no temporary, so the sender's retry stores exactly one copy (not NAME_1.dcm beside it)."""
    out = tmp_path / "out"
    uid = UID + "7"
    data = raw_dataset(SC_IMAGE, uid, payload(7, 5000))
    with patched_listen(raising("fsync", IS_DIR, times=1), "-od", str(out), "--on-duplicate", policy) as server:
        channel = associate(server.port)
        try:
            assert store(channel, data, uid) == 0xA700
            assert files(out) == [] and not temps(out)
            assert store(channel, data, uid) == 0  # the retry
        finally:
            close_association(channel)
        assert server.wait_for_stderr("injected"), server.stderr()
    assert [p.name for p in files(out)] == [f"{uid}.dcm"] and not temps(out)
    assert body(out / f"{uid}.dcm") == data


# --------------------------------------------------------------------------- fsync counted

COUNT_FSYNC = """
    import os, stat
    _real_fsync = os.fsync
    def _count_fsync(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        with open({log!r}, "a") as log:
            log.write(kind + " " + os.readlink("/proc/self/fd/%d" % fd) + "\\n")
        return _real_fsync(fd)
    os.fsync = _count_fsync
"""


@pytest.mark.parametrize("flag", [None, "--no-fsync"])
def test_fsync_of_file_and_folder_by_default_not_with_no_fsync(tmp_path, flag):
    out = tmp_path / "out"
    log = tmp_path / "fsync.log"
    log.touch()
    uids = [UID + "8", UID + "9"]
    args = ["-od", str(out), "--filepath", "{CallingAET}/{SOPInstanceUID}.dcm"] + ([flag] if flag else [])
    with patched_listen(COUNT_FSYNC.format(log=str(log)), *args) as server:
        channel = associate(server.port)
        try:
            for uid in uids:
                assert store(channel, raw_dataset(SC_IMAGE, uid, payload(8, 5000)), uid) == 0
        finally:
            close_association(channel)
    lines = log.read_text().splitlines()
    assert len(files(out)) == 2
    if flag:
        assert lines == []
        return
    files_synced = [line for line in lines if line.startswith("file ")]
    dirs_synced = [line.split(" ", 1)[1] for line in lines if line.startswith("dir ")]
    assert len(files_synced) == 2, lines  # each file before its rename
    assert dirs_synced == [str((out / "RAWSCU").resolve())] * 2, lines  # the folder that got the new entry


# --------------------------------------------------------------------------- 0xA900 drops the temporary at once

def _send_pdus(channel, data: bytes, uid: str, start: int, stop: int | None) -> None:
    """PDUs ``start``..``stop`` of the C-STORE begun by ``send_partial`` (same message ID)."""
    from itertools import islice

    from dcmnet_cli.dimse.commandset import c_store_rq
    from dcmnet_cli.dimse.fragment import fragment_message
    from storage_helpers import partial_pdu, context_for

    cid = context_for(channel)
    message = c_store_rq(channel.partial_message_id, SC_IMAGE, uid)
    for pdu in islice(fragment_message(cid, message.encode(), data, partial_pdu(channel)), start, stop):
        channel.assoc.send_pdata(pdu)
        channel.flush()


def test_uid_mismatch_drops_the_temporary_before_the_data_set_ends(tmp_path):
    """A data set whose SOP Instance UID differs from the command's is dropped as soon as the walk has
    passed it: the temporary (which exists while a 300 KB element before the UIDs streams in) is removed
    then, while most of the data set has still to come, not written to the end; the answer is 0xA900."""
    from storage_helpers import _el, wait_response

    out = tmp_path / "out"
    uid = UID + "10"
    lead = _el(0x0008, 0x0006, b"UT", b"x" * 300_000)  # before (0008,0016): the UIDs come in PDU 3 or 4
    data = lead + raw_dataset(SC_IMAGE, uid + ".0", payload(10, 2_000_000))  # ~18 PDUs at 128 KiB
    with listen_server("-od", str(out)) as server:
        channel = associate(server.port)
        try:
            send_partial(channel, data, uid, pdus=2)  # the command and the first 128 KiB
            assert wait_until(lambda: len(temps(out)) == 1)
            _send_pdus(channel, data, uid, 2, 6)  # past the UIDs, far from the end
            assert wait_until(lambda: not temps(out)), "the temporary is still being written after 0xA900"
            _send_pdus(channel, data, uid, 6, None)
            assert wait_response(channel).status == 0xA900
            assert store(channel, raw_dataset(SC_IMAGE, uid + ".1"), uid + ".1") == 0
        finally:
            close_association(channel)
    assert [p.name for p in files(out)] == [f"{uid}.1.dcm"]
    assert not temps(out)
