"""``listen``'s index options (issue 11): bad combinations are usage errors (exit 2), an index file that
cannot be used exits 3 with one line naming it, and the index file is never taken for a stored object."""

from __future__ import annotations

from helpers.procs import run_dcmnet


def test_read_only_needs_an_index(tmp_path):
    code, _, err = run_dcmnet("listen", "--bind", "127.0.0.1", "--read-only", "0")
    assert code == 2 and "--read-only needs an index" in err


def test_no_index_contradicts_index_and_read_only(tmp_path):
    code, _, err = run_dcmnet("listen", "--bind", "127.0.0.1", "-od", str(tmp_path), "--no-index", "--read-only", "0")
    assert code == 2 and "--no-index contradicts" in err


def test_verify_only_refuses_read_only(tmp_path):
    code, _, err = run_dcmnet("listen", "--bind", "127.0.0.1", "--verify-only", "--read-only", "0")
    assert code == 2 and "--verify-only accepts no storage" in err


def test_unusable_index_file_exits_3(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"not a database at all, but long enough to be read as one" * 20)
    code, _, err = run_dcmnet("listen", "--bind", "127.0.0.1", "-od", str(tmp_path / "out"), "--index", str(bad), "0")
    assert code == 3
    assert err.strip().splitlines()[-1] == f"dcmnet: error: cannot use index {bad}: file is not a database"
    code, _, err = run_dcmnet("listen", "--bind", "127.0.0.1", "-od", str(tmp_path / "out"),
                              "--index", str(tmp_path / "missing" / "i.sqlite"), "0")
    assert code == 3 and "cannot use index" in err and "Traceback" not in err
