"""Status table: PS3.7 Annex C and the PS3.4 service-specific codes; unknown codes by range."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dcmnet_cli.dimse.status import Category, StatusInfo, category_of, describe

S, W, F, C, P = Category.SUCCESS, Category.WARNING, Category.FAILURE, Category.CANCEL, Category.PENDING


@pytest.mark.parametrize("code, service, category, words", [
    (0x0000, None, S, "success"),
    (0x0001, None, W, "warning"),
    (0x0107, None, W, "attribute list error"),
    (0x0116, None, W, "out of range"),
    (0x0110, None, F, "processing failure"),
    (0x0111, None, F, "duplicate SOP instance"),
    (0x0112, None, F, "no such SOP instance"),
    (0x0117, None, F, "invalid object instance"),
    (0x0118, None, F, "no such SOP class"),
    (0x0119, None, F, "class-instance conflict"),
    (0x0122, "storage", F, "SOP class not supported"),
    (0x0124, None, F, "not authorized"),
    (0x0210, None, F, "duplicate invocation"),
    (0x0211, None, F, "unrecognized operation"),
    (0x0212, None, F, "mistyped argument"),
    (0x0213, None, F, "resource limitation"),
    (0x0120, None, F, "missing attribute"),
    (0x0121, None, F, "missing attribute value"),
    (0x0105, None, F, "no such attribute"),
    (0x0106, None, F, "invalid attribute value"),
    (0x0115, None, F, "invalid argument value"),
    (0x0123, None, F, "no such action"),
    (0x0114, None, F, "no such argument"),
    # Storage, PS3.4 B.2.3
    (0xA700, "storage", F, "out of resources"),
    (0xA7FF, "C-STORE", F, "out of resources"),
    (0xA912, "store", F, "does not match SOP class"),
    (0xC123, "storage", F, "cannot understand"),
    (0xB000, "storage", W, "coercion"),
    (0xB006, "storage", W, "elements discarded"),
    (0xB007, "storage", W, "does not match SOP class"),
    # Query/Retrieve FIND, PS3.4 C.4.1.1.4
    (0xA700, "find", F, "out of resources"),
    (0xA900, "find", F, "identifier does not match"),
    (0xCFFF, "find", F, "unable to process"),
    (0xFE00, "find", C, "cancel"),
    (0xFF00, "find", P, "continuing"),
    (0xFF01, "find", P, "optional keys not supported"),
    # MOVE / GET, PS3.4 C.4.2.1.5 / C.4.3.1.4
    (0xA701, "move", F, "calculate number of matches"),
    (0xA702, "get", F, "perform sub-operations"),
    (0xA801, "move", F, "move destination unknown"),
    (0xA900, "move", F, "identifier does not match"),
    (0xC000, "get", F, "unable to process"),
    (0xFE00, "move", C, "cancel"),
    (0xB000, "move", W, "one or more failures"),
    (0xB000, "get", W, "one or more failures"),
    (0xFF00, "get", P, "continuing"),
    (0x0000, "echo", S, "success"),
])
def test_known_codes(code: int, service: str | None, category: Category, words: str) -> None:
    info = describe(code, service)
    assert info == StatusInfo(code, category, info.meaning)
    assert category is info.category and words in info.meaning


@pytest.mark.parametrize("code, category", [
    (0x1234, F), (0xA801, F), (0xAAAA, F), (0xC001, F), (0x0199, F), (0x0299, F), (0xB123, W), (0xBFFF, W),
    (0xFE01, F), (0xFF02, F), (0xFFFF, F),
])
def test_unknown_codes_by_range(code: int, category: Category) -> None:
    info = describe(code)
    assert info.category is category and info.meaning == f"unknown status 0x{code:04X}"


def test_a801_outside_move_is_not_named() -> None:
    assert describe(0xA801, "storage").meaning == "unknown status 0xA801"
    assert describe(0xA801, "get").category is F


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        describe(0x10000)
    with pytest.raises(ValueError):
        describe(-1)
    with pytest.raises(ValueError):
        describe(0, "n-print")


@given(st.integers(0, 0xFFFF), st.sampled_from([None, "echo", "storage", "find", "move", "get"]))
def test_every_code_has_a_category(code: int, service: str | None) -> None:
    info = describe(code, service)
    assert info.code == code and isinstance(info.category, Category) and info.meaning
    if "unknown" in info.meaning:
        assert info.category is category_of(code)
