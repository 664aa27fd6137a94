"""The two ways the Storage SCP makes a temporary (services/scp/placement.py), for tests that must hold
for both: unnamed (O_TMPFILE, linked to its final name) where the output directory's filesystem allows
it, named (``.dcmnet-tmp-….part``, locked, renamed or linked) where it does not. ``use_mode(mode,
monkeypatch)`` forces one; the predicates below recognise each path's system calls so that a fault can be
injected into either."""

from __future__ import annotations

import os

import pytest

from dcmnet_cli.services.scp import placement
from dcmnet_cli.services.scp.placement import TEMP_PREFIX, open_root

MODES = ("unnamed", "named")
O_TMPFILE = getattr(os, "O_TMPFILE", 0)


def use_mode(mode: str, monkeypatch) -> str:
    """``named``: as on a filesystem without O_TMPFILE (the probe finds it missing); ``unnamed``: the
    default here (the tests run on ext4 or tmpfs, which have it)."""
    assert mode in MODES
    if mode == "named":
        monkeypatch.setattr(placement, "O_TMPFILE", 0)
    else:
        assert placement.O_TMPFILE, "this kernel/Python has no O_TMPFILE: the unnamed path cannot be tested"
    return mode


def creates_temporary(name, flags: int = 0, *args, **kwargs) -> bool:
    """An ``os.open`` call that makes a temporary: a named one, or an unnamed one (the probe's too)."""
    return str(name).startswith(TEMP_PREFIX) or (O_TMPFILE != 0 and flags & O_TMPFILE == O_TMPFILE)


def is_temporary(fd: int) -> bool:
    """The descriptor is of a temporary: named, or unnamed (``/proc`` shows ``/dir/#inode (deleted)``)."""
    link = os.readlink(f"/proc/self/fd/{fd}")
    return link.rsplit("/", 1)[-1].startswith(TEMP_PREFIX) or link.endswith(" (deleted)")


def placing_call(mode: str) -> str:
    """The ``os`` function that gives a fresh object its final name: ``link`` (unnamed) or ``replace``
    (named, with the default ``--on-duplicate replace``)."""
    return "link" if mode == "unnamed" else "replace"


@pytest.fixture
def root(tmp_path):  # type: ignore[no-untyped-def]
    """(an output folder, a descriptor of it as the Storage SCP keeps one), closed after the test."""
    out = tmp_path / "out"
    out.mkdir()
    fd = open_root(str(out))
    yield out, fd
    os.close(fd)
