"""``dcmnet listen -od``: files on disk under hostile input and faults (scenarios E, G.39-46, H.47).

A raw C-STORE client built on the package's own SCU pieces talks to a real ``dcmnet listen`` process on
127.0.0.1. Every server is stopped in ``finally`` (``running_server``); every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

import pytest
from helpers.procs import free_port, listen_server, run_dcmnet
from storage_helpers import (
    _el,
    CT_IMAGE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    RLE,
    SC_IMAGE,
    associate,
    body,
    close_association,
    files,
    payload,
    raw_dataset,
    send_partial,
    send_rest,
    store,
    temps,
    wait_until,
)

from dcmnet_cli.errors import AssociationRejected

SAFE_NAME = re.compile(r"^\w[\w.^=+,@~-]*$")  # letters and digits of any script (filenames.py)
BIG = 600_000  # several P-DATA PDUs at the default 128 KiB maximum


def _events(server, kind: str) -> list[dict]:
    return [e for e in (json.loads(line) for line in server.stdout().splitlines() if line.startswith("{"))
            if e.get("event") == kind]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One listener for the tests that only add uniquely named objects."""
    base = tmp_path_factory.mktemp("shared")
    out = base / "out"
    with listen_server("--json", "-od", str(out)) as server:
        yield server, base, out


# --------------------------------------------------------------------------- G.39-40 hostile names

HOSTILE = ["../../x", "/etc/x", "..", ".", "a/b", "a\\b", "C:x", "a\0b", "1." * 40 + "1", "", "1.2.\xe9",
           "1.2.826.0.1.3680043.9.7781.77.1\0", "1.2.826.0.1.3680043.9.7781.77.2 ", ".dcmnet-tmp-x.part"]


@pytest.mark.parametrize("value", HOSTILE, ids=[repr(v) for v in HOSTILE])
def test_hostile_sop_instance_uid_stays_inside(shared, value):
    server, base, out = shared
    etc_before = os.path.lexists("/etc/x.dcm")
    before = set(files(out))
    data = raw_dataset(SC_IMAGE, value, payload(3, 2000))
    channel = associate(server.port)
    try:
        assert store(channel, data, value) == 0x0000
        new = set(files(out)) - before
        assert len(new) == 1, new  # Success only once the file exists under its final name
    finally:
        close_association(channel)
    path = new.pop()
    assert path.parent == out and SAFE_NAME.match(path.name), path.name
    assert path.resolve().is_relative_to(out.resolve())
    assert body(path) == data
    assert sorted(p.name for p in base.iterdir()) == ["out"]
    assert os.path.lexists("/etc/x.dcm") == etc_before
    stripped = value.rstrip("\0 ")
    if stripped and re.fullmatch(r"[0-9]+(\.[0-9]+)*", stripped) and len(stripped) <= 64:
        assert path.name == stripped + ".dcm"  # valid UIDs (after the padding) are kept
    assert not temps(out)


def test_values_that_sanitise_alike_do_not_overwrite(shared):
    server, _base, out = shared
    values = ["q/r", "q\\r", "q:r", "q r"]
    before = set(files(out))
    channel = associate(server.port)
    try:
        datasets = {v: raw_dataset(SC_IMAGE, v, payload(i, 100)) for i, v in enumerate(values)}
        for value, data in datasets.items():
            assert store(channel, data, value) == 0
    finally:
        close_association(channel)
    new = set(files(out)) - before
    assert len(new) == len(values)
    assert {body(p) for p in new} == set(datasets.values())


def test_success_means_final_name_and_json_event(shared):
    server, _base, out = shared
    uid = "1.2.826.0.1.3680043.9.7781.77.10"
    channel = associate(server.port, calling="JSONSCU")
    try:
        assert store(channel, raw_dataset(SC_IMAGE, uid, b"xy"), uid) == 0
        assert (out / f"{uid}.dcm").is_file()
    finally:
        close_association(channel)
    assert wait_until(lambda: any(e["sop_instance_uid"] == uid for e in _events(server, "stored")))
    event = next(e for e in _events(server, "stored") if e["sop_instance_uid"] == uid)
    assert event == {"event": "stored", "path": str((out / f"{uid}.dcm").resolve()), "sop_class_uid": SC_IMAGE,
                     "sop_instance_uid": uid, "bytes": (out / f"{uid}.dcm").stat().st_size, "status": "0x0000",
                     "calling_ae": "JSONSCU", "peer": event["peer"], "node": event["node"]}  # issue 14: --node-id
    assert event["peer"].startswith("127.0.0.1:")


def test_dataset_uids_must_match_command(shared):
    server, _base, out = shared
    before = set(files(out))
    channel = associate(server.port, sop_classes=((SC_IMAGE, (EXPLICIT_LE,)), (CT_IMAGE, (EXPLICIT_LE,))))
    try:
        uid = "1.2.826.0.1.3680043.9.7781.77.20"
        assert store(channel, raw_dataset(SC_IMAGE, uid + ".9"), uid) == 0xA900  # other instance
        assert store(channel, raw_dataset(CT_IMAGE, uid), uid) == 0xA900  # other class
        assert store(channel, b"\x08\x00\x16\x00zz\x04\x00abcd", uid) == 0xC000  # not parsable
        assert store(channel, raw_dataset(SC_IMAGE, uid), uid) == 0  # the association is still fine
    finally:
        close_association(channel)
    assert [p.name for p in set(files(out)) - before] == [f"{uid}.dcm"]
    assert not temps(out)


def test_uids_found_after_several_pdus_and_mismatch_mid_stream(shared):
    """The UID check reads the data set's start as it arrives: UIDs behind a 300 KB element (several
    PDUs) are still found; a mismatch found mid-stream drops the temp file and the association goes on."""
    server, _base, out = shared
    before = set(files(out))
    uid = "1.2.826.0.1.3680043.9.7781.77.21"
    lead = _el(0x0008, 0x0006, b"UT", b"x" * 300_000)  # long VR, before (0008,0016)
    good = lead + raw_dataset(SC_IMAGE, uid, payload(4, BIG))
    bad = lead + raw_dataset(SC_IMAGE, uid + ".9", payload(5, BIG))
    channel = associate(server.port)
    try:
        assert store(channel, bad, uid) == 0xA900
        assert store(channel, good, uid) == 0
    finally:
        close_association(channel)
    assert [p.name for p in set(files(out)) - before] == [f"{uid}.dcm"]
    assert body(out / f"{uid}.dcm") == good
    assert not temps(out)


def test_template_folder_removed_or_swapped_after_first_use(tmp_path):
    """Template folders are checked once and remembered: removed → created again; replaced by a symlink
    to elsewhere → noticed (0xC000 unsafe path), nothing written outside."""
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    uids = [f"1.2.826.0.1.3680043.9.7781.77.6{i}" for i in range(4)]
    with listen_server("-od", str(out), "--filepath", "{CallingAET}/sub/{SOPInstanceUID}.dcm") as server:
        channel = associate(server.port)
        try:
            assert store(channel, raw_dataset(SC_IMAGE, uids[0]), uids[0]) == 0
            shutil.rmtree(out / "RAWSCU")
            assert store(channel, raw_dataset(SC_IMAGE, uids[1]), uids[1]) == 0
            assert (out / "RAWSCU" / "sub" / f"{uids[1]}.dcm").is_file()
            shutil.rmtree(out / "RAWSCU")
            (out / "RAWSCU").symlink_to(elsewhere)
            (elsewhere / "sub").mkdir()
            assert store(channel, raw_dataset(SC_IMAGE, uids[2]), uids[2]) == 0xC000
            (out / "RAWSCU").unlink()
            assert store(channel, raw_dataset(SC_IMAGE, uids[3]), uids[3]) == 0
        finally:
            close_association(channel)
    assert [p.relative_to(out).as_posix() for p in files(out)] == [f"RAWSCU/sub/{uids[3]}.dcm"]
    assert not any(elsewhere.rglob("*.dcm"))
    assert not temps(out)


def test_temp_names_unique_across_forked_workers(tmp_path):
    """Temp names are a per-process random tag + a counter; a forked child gets a fresh tag."""
    code = ("import os, sys\n"
            "from dcmnet_cli.services.scp import placement as s\n"
            "a = [s.TEMP_NAMES.next() for _ in range(3)]\n"
            "r, w = os.pipe()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os.write(w, s.TEMP_NAMES.next().encode()); os._exit(0)\n"
            "os.waitpid(pid, 0); child = os.read(r, 200).decode()\n"
            "print(len(set(a)) == 3, child not in a, child.split('-')[2] != a[0].split('-')[2])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "True"]


# --------------------------------------------------------------------------- G.41 symlinks, G.45 duplicates

@pytest.mark.parametrize("policy", ["replace", "keep"])
def test_symlink_at_final_name_not_followed(tmp_path, policy):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    uid = "1.2.826.0.1.3680043.9.7781.77.30"
    (out / f"{uid}.dcm").symlink_to(victim)
    data = raw_dataset(SC_IMAGE, uid, b"new")
    with listen_server("-od", str(out), "--on-duplicate", policy) as server:
        channel = associate(server.port)
        try:
            # keep: a symlink is not a kept copy (the object would be stored nowhere): 0xA700
            assert store(channel, data, uid) == (0 if policy == "replace" else 0xA700)
        finally:
            close_association(channel)
    assert victim.read_bytes() == b"precious"
    final = out / f"{uid}.dcm"
    if policy == "replace":
        assert not final.is_symlink() and body(final) == data
    else:
        assert final.is_symlink()
    assert not temps(out)


@pytest.mark.parametrize("policy", ["replace", "keep", "rename"])
def test_duplicate_policies(tmp_path, policy):
    out = tmp_path / "out"
    uid = "1.2.826.0.1.3680043.9.7781.77.40"
    versions = [raw_dataset(SC_IMAGE, uid, payload(i, 5000)) for i in range(3)]
    with listen_server("--json", "-od", str(out), "--on-duplicate", policy) as server:
        channel = associate(server.port)
        try:
            for data in versions:
                assert store(channel, data, uid) == 0
        finally:
            close_association(channel)
    names = sorted(p.name for p in files(out))
    if policy == "replace":
        assert names == [f"{uid}.dcm"] and body(out / names[0]) == versions[-1]
    elif policy == "keep":
        assert names == [f"{uid}.dcm"] and body(out / names[0]) == versions[0]
    else:
        assert names == [f"{uid}.dcm", f"{uid}_1.dcm", f"{uid}_2.dcm"]
        assert [body(out / n) for n in names] == versions
    assert not temps(out)


# --------------------------------------------------------------------------- G.43 abort / FIN / leftovers

@pytest.mark.parametrize("how", ["abort", "fin"])
def test_interrupted_dataset_leaves_good_copy(tmp_path, how):
    out = tmp_path / "out"
    uid = "1.2.826.0.1.3680043.9.7781.77.50"
    good, bad = raw_dataset(SC_IMAGE, uid, payload(1, BIG)), raw_dataset(SC_IMAGE, uid, payload(2, BIG))
    with listen_server("-od", str(out)) as server:
        channel = associate(server.port)
        try:
            assert store(channel, good, uid) == 0
        finally:
            close_association(channel)
        channel = associate(server.port)
        send_partial(channel, bad, uid, pdus=2)
        assert wait_until(lambda: len(temps(out)) == 1)  # the second copy is being written
        if how == "abort":
            channel.abort()
        else:
            channel.sock.shutdown(__import__("socket").SHUT_RDWR)
            channel.close()
        assert wait_until(lambda: not temps(out)), temps(out)
        assert body(out / f"{uid}.dcm") == good
        assert [p.name for p in files(out)] == [f"{uid}.dcm"]
        channel = associate(server.port)  # the listener is fine
        try:
            assert store(channel, raw_dataset(SC_IMAGE, uid + ".1"), uid + ".1") == 0
        finally:
            close_association(channel)
        assert server.alive()


def test_leftover_temps_removed_at_start(tmp_path):
    """Temporaries live in the output root only, so only the root is scanned (not the whole tree)."""
    out = tmp_path / "out"
    (out / "sub" / "deeper").mkdir(parents=True)
    leftovers = [out / ".dcmnet-tmp-0123.part", out / ".dcmnet-tmp-4567.part"]
    for path in leftovers:
        path.write_bytes(b"half")
    keep = [out / "keep.dcm", out / "sub" / ".dcmnet-tmp-not-ours.txt", out / "sub" / "deeper" / ".dcmnet-tmp-89ab.part"]
    for path in keep:
        path.write_bytes(b"x")
    with listen_server("-od", str(out)) as server:
        assert server.wait_for_stderr("removed 2 leftover"), server.stderr()
    assert not any(p.exists() for p in leftovers)
    assert all(p.exists() for p in keep)


# --------------------------------------------------------------------------- G.44 out of resources

def test_output_dir_removed_mid_run_answers_a700_and_recovers(tmp_path):
    out = tmp_path / "out"
    with listen_server("-od", str(out)) as server:
        channel = associate(server.port)
        try:
            assert store(channel, raw_dataset(SC_IMAGE, "1.2.3.1"), "1.2.3.1") == 0
            shutil.rmtree(out)
            assert store(channel, raw_dataset(SC_IMAGE, "1.2.3.2", payload(1, BIG)), "1.2.3.2") == 0xA700
            out.mkdir()
            assert store(channel, raw_dataset(SC_IMAGE, "1.2.3.3"), "1.2.3.3") == 0
        finally:
            close_association(channel)
        assert server.wait_for_stderr("failed")
    assert [p.name for p in files(out)] == ["1.2.3.3.dcm"]


def test_full_filesystem_answers_a700_and_removes_temp(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("needs root to mount a small tmpfs (a full disk without root: test_storage_failures.py"
                    f"::test_disk_full_mid_write_without_root): {done.stderr.decode(errors='replace').strip()}")
    try:
        with listen_server("-od", str(mount), "--no-fsync") as server:
            channel = associate(server.port)
            try:
                assert store(channel, raw_dataset(SC_IMAGE, "1.2.4.1", payload(1, 3_000_000)), "1.2.4.1") == 0xA700
                assert not temps(mount)
                assert store(channel, raw_dataset(SC_IMAGE, "1.2.4.2", b"small"), "1.2.4.2") == 0
            finally:
                close_association(channel)
        assert [p.name for p in files(mount)] == ["1.2.4.2.dcm"]
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


# --------------------------------------------------------------------------- G.46 SIGTERM

def test_sigterm_lets_inflight_store_finish(tmp_path):
    out = tmp_path / "out"
    uid = "1.2.826.0.1.3680043.9.7781.77.60"
    data = raw_dataset(SC_IMAGE, uid, payload(5, BIG))
    with listen_server("-od", str(out), "--shutdown-grace", "10") as server:
        channel = associate(server.port)
        try:
            send_partial(channel, data, uid, pdus=2)
            assert wait_until(lambda: len(temps(out)) == 1)
            server.proc.send_signal(signal.SIGTERM)
            send_rest(channel, data, uid, pdus=2)
            from storage_helpers import wait_response

            assert wait_response(channel).status == 0
        finally:
            close_association(channel)
        assert server.proc.wait(10) == 0
        assert "1 stored" in server.stderr()
    assert body(out / f"{uid}.dcm") == data
    assert not temps(out)


def test_sigterm_with_stalled_transfer_removes_temp(tmp_path):
    out = tmp_path / "out"
    uid = "1.2.826.0.1.3680043.9.7781.77.61"
    with listen_server("-od", str(out), "--shutdown-grace", "0.5") as server:
        channel = associate(server.port)
        try:
            send_partial(channel, raw_dataset(SC_IMAGE, uid, payload(6, BIG)), uid, pdus=2)
            assert wait_until(lambda: len(temps(out)) == 1)
            server.proc.send_signal(signal.SIGTERM)
            assert server.proc.wait(10) == 0
            assert "stopped:" in server.stderr()
        finally:
            channel.close()
    assert not temps(out) and not files(out)


# --------------------------------------------------------------------------- H.47 load

def test_fifty_simultaneous_storing_associations(tmp_path):
    out = tmp_path / "out"
    count = 50
    datasets = {f"1.2.826.0.1.3680043.9.7781.88.{i}": payload(i, 40_000 + i) for i in range(count)}
    results: dict[str, int] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def client(uid: str, pixels: bytes) -> None:
        try:
            channel = associate(server.port)
            try:
                barrier.wait(10)
                results[uid] = store(channel, raw_dataset(SC_IMAGE, uid, pixels), uid)
            finally:
                close_association(channel)
        except BaseException as error:  # reported below
            errors.append(error)
            barrier.abort()

    with listen_server("-od", str(out), "--max-associations", "64") as server:
        threads = [threading.Thread(target=client, args=item) for item in datasets.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert not errors, errors[:3]
    assert results == {uid: 0 for uid in datasets}
    for uid, pixels in datasets.items():
        assert body(out / f"{uid}.dcm") == raw_dataset(SC_IMAGE, uid, pixels)
    assert not temps(out)


# --------------------------------------------------------------------------- options

def test_exec_hooks_get_argv_and_environment(tmp_path):
    out, log = tmp_path / "out", tmp_path / "log"
    log.mkdir()
    script = tmp_path / "hook.py"
    script.write_text(
        "import json, os, sys, uuid\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('DCMNET_')}\n"
        f"open(os.path.join({str(log)!r}, uuid.uuid4().hex + '.json'), 'w').write(json.dumps({{'argv': sys.argv[1:], 'env': env}}))\n")
    hook = f"{sys.executable} {script} 'two words'"
    uid = "a/b;$(touch pwned)"
    with listen_server("-od", str(out), "--exec-on-receive", hook, "--exec-on-association-end", hook,
                       "-aet", "NODE") as server:
        channel = associate(server.port, calling="HOOKSCU")
        try:
            assert store(channel, raw_dataset(SC_IMAGE, uid, b"1"), uid) == 0
        finally:
            close_association(channel)
        assert wait_until(lambda: len(list(log.iterdir())) == 2, 10)
    records = [json.loads(p.read_text()) for p in log.iterdir()]
    per_file = next(r for r in records if "DCMNET_PATH" in r["env"])
    at_end = next(r for r in records if "DCMNET_COUNT" in r["env"])
    stored = files(out)[0]
    assert per_file["argv"] == ["two words", str(stored.resolve())]
    assert per_file["env"]["DCMNET_PATH"] == str(stored.resolve())
    assert per_file["env"]["DCMNET_SOP_INSTANCE_UID"] == uid and per_file["env"]["DCMNET_SOP_CLASS_UID"] == SC_IMAGE
    assert per_file["env"]["DCMNET_REMOTE_AET"] == "HOOKSCU" and per_file["env"]["DCMNET_LOCAL_AET"] == "ANY-SCP"
    assert per_file["env"]["DCMNET_PEER"].startswith("127.0.0.1:")
    assert at_end["env"]["DCMNET_COUNT"] == "1" and at_end["env"]["DCMNET_DIR"] == str(out.resolve())
    assert at_end["argv"] == ["two words", str(out.resolve())]
    assert not list(tmp_path.rglob("pwned"))


@pytest.mark.parametrize("ignore", [True, False])
def test_ignore_receives_and_discards(tmp_path, ignore):
    """--ignore answers Success and writes nothing, neither in the listener's working folder (the default
    output folder) nor in a folder given with -od; without --ignore the same store lands in the working
    folder, which shows the check looks where the listener writes."""
    cwd, out = tmp_path / "cwd", tmp_path / "od"
    cwd.mkdir()
    uid = "1.2.5.1"
    for flags in ([], ["-od", str(out)]):
        with listen_server(*(["--ignore"] if ignore else []), "--json", *flags, cwd=cwd) as server:
            channel = associate(server.port)
            try:
                assert store(channel, raw_dataset(SC_IMAGE, uid, payload(1, BIG)), uid) == 0
            finally:
                close_association(channel)
            kind = "received" if ignore else "stored"
            assert wait_until(lambda: bool(_events(server, kind))), server.stdout()
            assert (_events(server, kind)[0]["path"] is None) is ignore
        if not ignore:
            break
    if ignore:
        assert files(cwd) == [] and not out.exists()
    else:
        assert [p.name for p in files(cwd) if not p.name.startswith(".dcmnet-index")] == [f"{uid}.dcm"]


def test_negotiation_preference_accept_and_promiscuous(tmp_path):
    out = tmp_path / "out"
    unknown = "1.2.826.0.1.3680043.9.7781.55.1"
    with listen_server("-od", str(out)) as server:
        channel = associate(server.port, sop_classes=((SC_IMAGE, (RLE, IMPLICIT_LE, EXPLICIT_LE)), (CT_IMAGE, (RLE,)),
                                                      (unknown, (EXPLICIT_LE,))))
        try:
            syntaxes = {c.abstract_syntax: c.transfer_syntax for c in channel.assoc.contexts.values()}
        finally:
            close_association(channel)
        assert syntaxes == {SC_IMAGE: EXPLICIT_LE, CT_IMAGE: RLE}  # unknown class refused
        with pytest.raises(AssociationRejected):
            associate(server.port, sop_classes=((unknown, (EXPLICIT_LE,)),))
    with listen_server("-od", str(out), "--promiscuous", "--accept", "ImplicitVRLittleEndian") as server:
        channel = associate(server.port, sop_classes=((unknown, (EXPLICIT_LE, IMPLICIT_LE)),))
        try:
            assert [c.transfer_syntax for c in channel.assoc.contexts.values()] == [IMPLICIT_LE]
            from dcmnet_cli.dimse.commandset import c_store_rq
            from storage_helpers import wait_response

            channel.send_message(next(iter(channel.assoc.contexts)), c_store_rq(1, unknown, "1.2.6.1"),
                                 _implicit(unknown, "1.2.6.1"))
            assert wait_response(channel).status == 0
        finally:
            close_association(channel)
    assert (out / "1.2.6.1.dcm").is_file()


def _implicit(sop_class: str, instance: str) -> bytes:
    import struct

    def el(elem: int, value: bytes) -> bytes:
        value += b"\0" * (len(value) & 1)
        return struct.pack("<HHI", 0x0008, elem, len(value)) + value

    return el(0x16, sop_class.encode()) + el(0x18, instance.encode())


def test_workers_share_the_port(tmp_path):
    out = tmp_path / "out"
    with listen_server("-od", str(out), "--workers", "2") as server:
        for i in range(8):
            channel = associate(server.port)
            try:
                assert store(channel, raw_dataset(SC_IMAGE, f"1.2.7.{i}"), f"1.2.7.{i}") == 0
            finally:
                close_association(channel)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(15) == 0
        err = server.stderr()
    assert len(files(out)) == 8
    assert "worker 1 stopped:" in err and err.count("stopped:") == 2


@pytest.mark.parametrize("args", [["--accept", "NoSuchSyntax", "-od", "x"], ["--verify-only", "--filepath", "{SOPInstanceUID}"],
                                  ["-od", "x", "--filepath", "../{SOPInstanceUID}"],
                                  ["-od", "x", "--filepath", "{NoSuchKeyword}.dcm"]])
def test_usage_errors(args, tmp_path):
    """Exit 2, and nothing created: the output folder is made only once every option is known good."""
    args = [str(tmp_path / "x") if arg == "x" else arg for arg in args]
    rc, _out, err = run_dcmnet("listen", *args, str(free_port()), timeout=20)
    assert rc == 2, err
    assert not (tmp_path / "x").exists()


def test_help_describes_storage_and_import_stays_light():
    rc, out, _err = run_dcmnet("listen", "--help")
    assert rc == 0 and "-od" in out and "--on-duplicate" in out and "--ignore" in out
    code = "import sys, dcmnet_cli.cli.commands.listen; assert 'pydicom' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=20).returncode == 0
