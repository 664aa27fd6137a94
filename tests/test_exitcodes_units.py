"""cli/exitcodes.py and dimse/status.py at the unit level: what the mutation run (``make mutate``) found
no test for. In-process only (mutmut 3 kills a mutant only through tests that import the package).

The exit-code contract against real peers is tests/test_exit_matrix.py; this file pins the table text,
the lazily built category map, the defaults, and every category boundary of PS3.7 Annex C.
"""

from __future__ import annotations

import pytest

from dcmnet_cli.cli import exitcodes
from dcmnet_cli.cli.exitcodes import MEANINGS, ExitCode, combine, for_error, for_status, table_text
from dcmnet_cli.dimse.status import Category, category_of, describe

E = ExitCode


def test_combine_does_not_hide_warnings_by_default():
    assert combine([E.WARNING]) is E.WARNING
    assert combine([E.WARNING, E.SUCCESS]) is E.WARNING
    assert combine([E.WARNING], True) is E.SUCCESS


def test_combine_of_nothing_is_success():
    assert combine([]) is E.SUCCESS and combine(set()) is E.SUCCESS


@pytest.mark.parametrize(("status", "expected"), [
    (0x0000, E.SUCCESS), (0xB000, E.WARNING), (0xFE00, E.CANCELLED), (0xFF00, E.SUCCESS), (0xA700, E.FAILURE)])
def test_for_status_builds_its_map_on_first_use(monkeypatch, status, expected):
    """The category → exit code map is built lazily (dimse.status loads on first use): from scratch,
    every category still maps right, and the map is kept for the next call."""
    monkeypatch.setattr(exitcodes, "_BY_CATEGORY", None)
    assert for_status(status) is expected
    assert exitcodes._BY_CATEGORY is not None and len(exitcodes._BY_CATEGORY) == 4
    assert for_status(status) is expected


def test_table_text_is_one_line_per_code_in_order():
    lines = table_text().split("\n")
    assert lines == [f"{int(code):>4}  {MEANINGS[code]}" for code in ExitCode]
    assert lines[0] == "   0  every operation succeeded (for find, zero matches is still 0)"
    assert lines[-1].startswith(" 130  interrupted")
    assert len(lines) == len(ExitCode) == 11


def test_every_code_has_a_meaning():
    assert set(MEANINGS) == set(ExitCode) and all(MEANINGS.values())


def test_unlisted_exception_is_internal_and_interrupt_is_130():
    assert for_error(RuntimeError("bug")) is E.INTERNAL
    assert for_error(KeyboardInterrupt()) is E.INTERRUPTED


# --------------------------------------------------------------------------- dimse/status.py boundaries

@pytest.mark.parametrize(("status", "category"), [
    (0x0000, Category.SUCCESS), (0x0001, Category.WARNING), (0x0002, Category.FAILURE),
    (0x0106, Category.FAILURE), (0x0107, Category.WARNING), (0x0108, Category.FAILURE),
    (0x0115, Category.FAILURE), (0x0116, Category.WARNING), (0x0117, Category.FAILURE),
    (0xAFFF, Category.FAILURE), (0xB000, Category.WARNING), (0xBFFF, Category.WARNING),
    (0xC000, Category.FAILURE), (0xFDFF, Category.FAILURE), (0xFE00, Category.CANCEL),
    (0xFE01, Category.FAILURE), (0xFEFF, Category.FAILURE), (0xFF00, Category.PENDING),
    (0xFF01, Category.PENDING), (0xFF02, Category.FAILURE), (0xFFFF, Category.FAILURE),
])
def test_category_boundaries(status, category):
    assert category_of(status) is category
    assert describe(status).category is category


@pytest.mark.parametrize(("status", "service", "category", "meaning"), [
    (0xA7FF, "storage", Category.FAILURE, "refused: out of resources"),
    (0xA800, "storage", Category.FAILURE, "unknown status 0xA800"),
    (0xA9FF, "c-store", Category.FAILURE, "error: data set does not match SOP class"),
    (0xCFFF, "store", Category.FAILURE, "error: cannot understand"),
    (0xB006, "storage", Category.WARNING, "elements discarded"),
    (0xB001, "storage", Category.WARNING, "unknown status 0xB001"),
    (0xA700, "find", Category.FAILURE, "refused: out of resources"),
    (0xA701, "find", Category.FAILURE, "unknown status 0xA701"),
    (0xFE00, "C-FIND", Category.CANCEL, "matching terminated due to cancel"),
    (0xFF01, "find", Category.PENDING, "matches are continuing, optional keys not supported"),
    (0xA801, "move", Category.FAILURE, "refused: move destination unknown"),
    (0xA801, "get", Category.FAILURE, "unknown status 0xA801"),
    (0xB000, "c-get", Category.WARNING, "sub-operations complete, one or more failures or warnings"),
    (0x0110, "verification", Category.FAILURE, "processing failure"),
    (0x0000, "echo", Category.SUCCESS, "success"),
])
def test_service_specific_meanings(status, service, category, meaning):
    info = describe(status, service)
    assert (info.code, info.category, info.meaning) == (status, category, meaning)


@pytest.mark.parametrize("bad", [-1, 0x10000])
def test_describe_refuses_non_16_bit_values(bad):
    with pytest.raises(ValueError, match="16-bit"):
        describe(bad)


def test_describe_refuses_an_unknown_service():
    with pytest.raises(ValueError, match="unknown service 'fax'"):
        describe(0, "fax")


def test_describe_bounds_are_inclusive():
    assert describe(0).meaning == "success" and describe(0xFFFF).meaning == "unknown status 0xFFFF"
