"""``dcmnet listen``: query/retrieve options that mean nothing in the combination given are usage errors
(exit 2, the reason on the one ``Error:`` line), like the storage options with --verify-only."""

from __future__ import annotations

import pytest

from helpers.procs import run_dcmnet


@pytest.mark.parametrize("args, words", [
    (("--verify-only", "--move-destination", "DEST=127.0.0.1:11112"), "drop --move-destination"),
    (("--verify-only", "--worklist", "."), "drop --worklist"),
    (("--verify-only", "--index", "x.sqlite"), "drop --index"),
    (("--move-destination", "DEST=127.0.0.1:11112"), "--move-destination needs an index"),  # bare listen: no index
    (("--ignore", "--move-destination", "DEST=127.0.0.1:11112"), "--move-destination needs an index"),
    (("-od", "{tmp}", "--no-index", "--move-destination", "DEST=127.0.0.1:11112"), "--move-destination needs an index"),
])
def test_meaningless_combinations_are_usage_errors(tmp_path, monkeypatch, args, words) -> None:
    monkeypatch.chdir(tmp_path)  # a bare listen stores into the current folder: keep it in tmp_path
    args = tuple(a.replace("{tmp}", str(tmp_path / "od")) for a in args)
    code, out, err = run_dcmnet("listen", "--bind", "127.0.0.1", *args, "0", timeout=20)
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 2 and len(errors) == 1 and words in errors[0], out + err


def test_help_says_listen_is_also_a_query_retrieve_node() -> None:
    code, out, err = run_dcmnet("listen", "--help")
    assert code == 0, err
    intro = " ".join(out.split("\n\n")[1].split())  # the first paragraph of the description
    for words in ("query/retrieve node", "C-FIND", "C-MOVE", "C-GET", "--worklist DIR", "Modality Worklist"):
        assert words in intro, intro


def test_help_documents_the_worklist_timezone_limit() -> None:
    code, out, err = run_dcmnet("listen", "--help")
    assert code == 0, err
    assert "Timezone Offset From UTC (0008,0201) in the query does not shift them" in " ".join(out.split()), out
