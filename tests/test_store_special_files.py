"""``store`` given what is not a regular file: a FIFO (alone, or met in a folder) must not make it wait for a
writer for ever, a device is not read, and a path with a line break stays one line of error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dcmnet_cli.errors import InputError
from dcmnet_cli.services.dicomfiles import open_dataset, read_meta
from helpers.procs import run_dcmnet
from store_helpers import make_file, scripted_scp, uid

HOST = "127.0.0.1"


def no_traceback(err: str) -> None:
    assert "Traceback" not in err and "internal error" not in err, err


def test_a_fifo_given_as_a_file_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "spool.fifo"
    os.mkfifo(fifo)
    with scripted_scp() as (port, scp):
        code, _, err = run_dcmnet("store", HOST, str(port), str(fifo), timeout=20)
    no_traceback(err)
    assert code == 3
    assert f"{fifo}: not a regular file (a FIFO, device or socket)" in err
    assert scp.stored == []


def test_a_fifo_in_a_folder_is_reported_and_the_files_beside_it_are_sent(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    make_file(folder, "beside-fifo")
    os.mkfifo(folder / "incoming.fifo")
    with scripted_scp() as (port, scp):
        code, _, err = run_dcmnet("store", HOST, str(port), str(folder), timeout=20)
    no_traceback(err)
    assert code == 3
    assert "incoming.fifo: not a regular file" in err
    assert [stored[0] for stored in scp.stored] == [uid("beside-fifo")]


def test_a_device_is_not_read() -> None:
    with pytest.raises(InputError, match="/dev/zero: not a regular file"):
        read_meta("/dev/zero")


def test_a_file_replaced_by_a_fifo_before_it_is_sent_is_refused(tmp_path: Path) -> None:
    path = make_file(tmp_path, "replaced")
    meta = read_meta(path)
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(InputError, match="not a regular file"):
        open_dataset(meta)


def test_a_path_with_a_line_break_is_one_line_of_error(tmp_path: Path) -> None:
    odd = tmp_path / "two\nlines\x1b[31m.dcm"
    code, _, err = run_dcmnet("store", HOST, "104", str(odd), timeout=20)
    no_traceback(err)
    assert code == 3
    lines = err.strip().splitlines()
    assert lines[0].startswith("dcmnet store: error: ") and "two\\nlines\\x1b[31m.dcm" in lines[0], err
    assert "\x1b" not in err
