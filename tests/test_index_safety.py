"""The index of ``dcmnet listen`` stays true to its folder (issue 11): kill -9 during a store, then a
restart, leaves index and folder agreeing (files without rows indexed, rows without files removed,
temporaries gone); 20 concurrent C-FINDs while storing all succeed, and so does the store."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dcmnet_cli.services.archive.index import Index
from helpers.procs import LOOPBACK, base_env, listen_server
from qr_helpers import make_datasets, uid, write_part10

AET = "DCMNET"
INDEX = ".dcmnet-index.sqlite"


def require_tools() -> None:
    if not all(shutil.which(t) for t in ("storescu", "findscu")):
        message = "DCMTK storescu/findscu not found on PATH"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def objects(count: int, folder: Path, pixels: int = 0) -> list[Path]:
    template = make_datasets()[0]
    paths = []
    for n in range(count):
        ds = template.copy()
        ds.SOPInstanceUID = f"{uid('safety')}.{n}"
        ds.InstanceNumber = n
        if pixels:
            ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = pixels, pixels, 16, 16, 15
            ds.PixelRepresentation, ds.SamplesPerPixel, ds.PhotometricInterpretation = 0, 1, "MONOCHROME2"
            ds.PixelData = bytes(2 * pixels * pixels)
        paths.append(write_part10(folder / f"{n}.dcm", ds))
    return paths


def on_disk(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


def indexed(folder: Path) -> set[str]:
    index = Index.open(str(folder / INDEX), str(folder))
    try:
        return set(index.files())
    finally:
        index.close()


def test_kill_9_during_store_then_restart_agrees(tmp_path, dcmtk):
    require_tools()
    store = tmp_path / "store"
    files = objects(150, tmp_path / "in", pixels=128)  # 32 kB each: the store takes a while
    with listen_server("-aet", AET, "-od", str(store)) as listen:
        sender = subprocess.Popen(["storescu", "-aec", AET, LOOPBACK, str(listen.port), *map(str, files)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=base_env(dcmtk=True))
        try:
            deadline = time.monotonic() + 20
            while len(on_disk(store)) < 20 and time.monotonic() < deadline:
                time.sleep(0.005)
            os.kill(listen.pid, signal.SIGKILL)  # mid-store: no shutdown, no cleanup
            listen.proc.wait(5)
        finally:
            sender.kill()
            sender.wait(5)
    stored = on_disk(store)
    assert 20 <= len(stored) < 150
    # what a crash (or a hand) can leave: a file without a row, a row without a file
    os.unlink(store / sorted(stored)[0])
    shutil.copy(files[149], store / "copied-in.dcm")
    with listen_server("-aet", AET, "-od", str(store)) as listen:
        assert on_disk(store) == indexed(store)
        assert "copied-in.dcm" in indexed(store)
        assert not [p for p in store.iterdir() if p.name.startswith(".dcmnet-tmp-")]
        assert listen.alive()


def test_twenty_finds_while_storing(tmp_path, dcmtk):
    require_tools()
    store = tmp_path / "store"
    objects(30, store / "pre")
    files = objects(100, tmp_path / "in", pixels=64)
    with listen_server("-aet", AET, "-od", str(store), "--max-associations", "40") as listen:
        env = base_env(dcmtk=True)
        sender = subprocess.Popen(["storescu", "-aec", AET, LOOPBACK, str(listen.port), *map(str, files)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        finders = [subprocess.Popen(["findscu", "-v", "-S", "-aec", AET, "-k", "QueryRetrieveLevel=IMAGE",
                                     "-k", f"StudyInstanceUID={make_datasets()[0].StudyInstanceUID}",
                                     "-k", f"SeriesInstanceUID={make_datasets()[0].SeriesInstanceUID}",
                                     "-k", "SOPInstanceUID=", LOOPBACK, str(listen.port)],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
                   for _ in range(20)]
        try:
            logs = [finder.communicate(timeout=30)[0] for finder in finders]
            _, sent = sender.communicate(timeout=60)
        finally:
            for proc in (sender, *finders):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)
        assert sender.returncode == 0, sent
        for finder, log in zip(finders, logs):
            assert finder.returncode == 0 and "Received Final Find Response (Success)" in log, log[-400:]
            assert log.count("Find Response") >= 31  # the 30 pre-placed ones at least, then the final
        assert len(indexed(store)) == 130
