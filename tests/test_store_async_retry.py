"""``store --async N`` when the association drops with requests outstanding: each file still gets its
own outcome, the ones answered are never sent again, the unanswered ones (sent or not) go again on a new
association with --retries, once each and in order, and are reported with exit 6 without.

The peer is the scripted in-process SCP granting a window of 8 and aborting the first association when
its fourth request is complete: it stored three, but its abort may overtake the last responses it had
queued, so the client sees k of them answered (1 <= k <= 3) and must re-send files k.. (at least once
delivery: a stored file whose response was lost goes again, as with any SCU).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dcmnet_cli.services.dicomfiles import read_meta

from helpers.procs import LOOPBACK, run_dcmnet
from store_helpers import ScriptedStorageSCP, make_file, scripted_scp


@contextmanager
def _windowed_scp(abort_after: int) -> Iterator[tuple[int, ScriptedStorageSCP]]:
    with scripted_scp(abort_after=abort_after) as (port, scp):
        scp.async_window = 8  # read when an association is negotiated: none has been yet
        yield port, scp


def _files(folder: Path, count: int) -> list[Path]:
    return [make_file(folder, f"aretry-{n}", rows=8, columns=8) for n in range(count)]


def test_unanswered_requests_are_retried_once_each(tmp_path: Path) -> None:
    files = _files(tmp_path, 12)
    with _windowed_scp(abort_after=3) as (port, scp):
        code, stdout, err = run_dcmnet("store", "-v", "--async", "8", "--retries", "2", "--retry-delay", "0.05",
                                       "--json", LOOPBACK, str(port), *map(str, files))
        stored = [u for u, _, _ in scp.stored]
    assert "the peer granted 8" in err, err
    assert code == 0, err
    uids = [read_meta(f).sop_instance_uid for f in files]
    answered = 15 - len(stored)  # by the first association, as the client saw it
    assert 1 <= answered <= 3 and stored == uids[:3] + uids[answered:], (answered, stored)
    summary = json.loads(stdout)
    assert summary["associations"] == 2
    assert [e["exit_code"] for e in summary["files"]] == [0] * 12


def test_without_retries_the_unanswered_files_are_reported_as_aborted(tmp_path: Path) -> None:
    files = _files(tmp_path, 12)
    with _windowed_scp(abort_after=3) as (port, scp):
        code, stdout, err = run_dcmnet("store", "--async", "8", "--json", LOOPBACK, str(port), *map(str, files))
        stored = [u for u, _, _ in scp.stored]
    assert code == 6, err
    assert "Traceback" not in err
    codes = [e["exit_code"] for e in json.loads(stdout)["files"]]
    answered = codes.count(0)
    assert 1 <= answered <= 3 and codes == [0] * answered + [6] * (12 - answered), codes
    assert stored == [read_meta(f).sop_instance_uid for f in files[:3]]
