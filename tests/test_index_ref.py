"""IndexRef opens the index once per process: a child forked after the parent opened it (``listen --workers``
forks after the start-up reconciliation) must open its own connection, never write through the parent's."""

from __future__ import annotations

import os
import sqlite3

from dcmnet_cli.services.archive.index import IndexRef


def test_a_forked_child_opens_its_own_index_and_its_rows_are_written(tmp_path):
    ref = IndexRef(str(tmp_path / ".dcmnet-index.sqlite"), str(tmp_path))
    parent = ref.get()
    assert ref.get() is parent
    pid = os.fork()
    if pid == 0:  # the child: exit status says what it saw
        code = 1
        try:
            mine = ref.get()
            if mine is not parent and ref.get() is mine:
                mine.add(str(tmp_path / "child.dcm"), {"SOPInstanceUID": "1.2.3.4", "SeriesInstanceUID": "1.2.3",
                                                       "StudyInstanceUID": "1.2", "PatientID": "P"}, size=1)
                mine.close()
                code = 0
        finally:
            os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ref.get() is parent
    conn = sqlite3.connect(str(tmp_path / ".dcmnet-index.sqlite"))
    try:
        assert conn.execute("SELECT sop_instance_uid FROM instance").fetchall() == [("1.2.3.4",)]
    finally:
        conn.close()
    ref.close()
