"""Unit tests for services/filenames.py: peer values made path-safe (scenario G.39-40), path templates."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dcmnet_cli.part10.filenames import (
    UNKNOWN,
    TemplateError,
    inside,
    is_valid_uid,
    parse_template,
    safe_component,
)

SAFE_NAME = re.compile(r"^\w[\w.^=+,@~-]*$")  # letters and digits of any script are kept (NFC)
HOSTILE = ["../../x", "/etc/x", "..", ".", "a/b", "a\\b", "C:x", "a\0b", "1." * 40 + "1", "", "1.2.3 ",
           "1.2.3\0", "UNKNOWN", "con", "nul.txt", "-rf", ".hidden", "x" * 300, "a b", "1.2.3\n", "e\u0301"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_become_single_safe_components(value):
    name = safe_component(value)
    assert SAFE_NAME.match(name), name
    assert name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name
    assert len(name) <= 64


@pytest.mark.parametrize("uid", ["1.2.3", "1.2.840.10008.5.1.4.1.1.7", "0", "1." * 31 + "1"])
def test_valid_uids_kept_as_they_are(uid):
    assert is_valid_uid(uid)
    assert safe_component(uid) == uid


@pytest.mark.parametrize("value", ["PAT-1", "abc_DEF.9", "Study1"])
def test_plain_safe_values_kept(value):
    assert safe_component(value) == value


def test_empty_and_absent_are_unknown_and_literal_unknown_is_not():
    assert safe_component("") == UNKNOWN
    assert safe_component(None) == UNKNOWN
    assert safe_component("UNKNOWN") != UNKNOWN


def test_uid_longer_than_64_is_hashed():
    uid = "1." * 40 + "1"
    assert not is_valid_uid(uid)
    assert safe_component(uid) != uid


def test_values_that_sanitise_alike_get_different_names():
    values = ["a/b", "a\\b", "a:b", "a b", "a\0b", "a_b"]
    names = {safe_component(v) for v in values}
    assert len(names) == len(values)


def test_a_value_shaped_like_a_hashed_name_is_hashed_again():
    hashed = safe_component("a/b")
    assert safe_component(hashed) != hashed


@given(st.text(max_size=80))
def test_injective_and_safe_on_random_text(text):
    name = safe_component(text)
    assert SAFE_NAME.match(name) and name not in (".", "..")
    other = text + "x"
    assert safe_component(other) != name


@given(st.text(max_size=20), st.text(max_size=20))
def test_no_two_values_share_a_name(a, b):
    if a != b:
        assert safe_component(a) != safe_component(b)


def test_template_fields_and_render():
    template = parse_template("{PatientID}/{StudyInstanceUID}/{SOPInstanceUID}.dcm", lambda k: True)
    assert template.fields == ("PatientID", "StudyInstanceUID", "SOPInstanceUID")
    assert template.dataset_fields == ("PatientID", "StudyInstanceUID")
    path = template.render({"PatientID": "../..", "StudyInstanceUID": None, "SOPInstanceUID": "1.2.3"})
    first, second, third = path.split("/")
    assert SAFE_NAME.match(first) and second == UNKNOWN and third == "1.2.3.dcm"


@pytest.mark.parametrize("text", ["/abs/{SOPInstanceUID}", "../{SOPInstanceUID}", "a/../{SOPInstanceUID}",
                                  "{SOPInstanceUID!r}", "{SOPInstanceUID:>10}", "{a.b}", "{x[0]}", "plain.dcm",
                                  "a//{SOPInstanceUID}", "a\\{SOPInstanceUID}", "{NotAKeyword}", "{", ""])
def test_bad_templates_refused(text):
    with pytest.raises(TemplateError):
        parse_template(text, lambda keyword: keyword in ("PatientID", "SOPInstanceUID"))


def test_inside():
    assert inside("/a/b", "/a/b")
    assert inside("/a/b", "/a/b/c")
    assert not inside("/a/b", "/a/bc")
    assert not inside("/a/b", "/a")
