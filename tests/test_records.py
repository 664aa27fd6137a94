"""ul/records.py: the run-time ``NamedTuple`` of the wire records behaves like ``typing.NamedTuple``.

Every record of ul/, dimse/ and part10/ (PDUs, items, events, messages) is built by it, so each test builds
the same class twice, once on ``typing.NamedTuple`` and once on ours, and compares what a user of the class
sees: construction (positional, keyword, defaults, errors), equality and hashing, ``repr``, the namedtuple
API, immutability, pickling and copying, ``match``, methods, properties and docstrings.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import typing

import pytest

from dcmnet_cli.ul import records
from dcmnet_cli.ul.pdu import PDV


def _make(base: type) -> type:
    class Item(base):  # type: ignore[misc, valid-type]
        """A test record."""

        kind: int
        name: str
        data: bytes = b""
        extra: tuple[int, ...] = ()

        def size(self) -> int:
            return len(self.data)

        @property
        def label(self) -> str:
            return f"{self.kind}:{self.name}"

        @classmethod
        def empty(cls, kind: int) -> Item:
            return cls(kind, "")

    return Item


OURS = _make(records.NamedTuple)
THEIRS = _make(typing.NamedTuple)
for _cls in (OURS, THEIRS):  # picklable by reference, like a module-level record
    _cls.__qualname__ = _cls.__name__ = f"Item{'Ours' if _cls is OURS else 'Theirs'}"
    globals()[_cls.__name__] = _cls


def _both(build):
    return build(OURS), build(THEIRS)


def test_construction_and_defaults_match() -> None:
    for build in (lambda c: c(1, "a"), lambda c: c(1, "a", b"xy"), lambda c: c(kind=2, name="b", extra=(3,)),
                  lambda c: c(1, name="a", data=b"z"), lambda c: c._make([1, "a", b"", ()]),
                  lambda c: c.empty(7)):
        ours, theirs = _both(build)
        assert tuple(ours) == tuple(theirs)
        assert ours == theirs  # tuples compare by value, as namedtuples do
        assert hash(ours) == hash(theirs)
    assert OURS._fields == THEIRS._fields == ("kind", "name", "data", "extra")
    assert OURS._field_defaults == THEIRS._field_defaults == {"data": b"", "extra": ()}
    assert OURS.__match_args__ == THEIRS.__match_args__


@pytest.mark.parametrize("build", [
    lambda c: c(1),                          # a required field missing
    lambda c: c(1, "a", b"", (), 5),         # too many
    lambda c: c(1, "a", colour="red"),       # unknown keyword
    lambda c: c(1, "a", kind=2),             # twice
    lambda c: c._make([1, "a"]),             # _make with the wrong length
])
def test_bad_construction_raises_typeerror_like_typing(build) -> None:
    for cls in (OURS, THEIRS):
        with pytest.raises(TypeError):
            build(cls)


def test_namedtuple_api_matches() -> None:
    ours, theirs = _both(lambda c: c(1, "a", b"xyz"))
    assert repr(ours).replace("ItemOurs", "X") == repr(theirs).replace("ItemTheirs", "X") \
        == "X(kind=1, name='a', data=b'xyz', extra=())"
    assert ours._asdict() == theirs._asdict() == {"kind": 1, "name": "a", "data": b"xyz", "extra": ()}
    assert tuple(ours._replace(name="b")) == tuple(theirs._replace(name="b")) == (1, "b", b"xyz", ())
    assert type(ours._replace(kind=3)) is OURS
    for rec in (ours, theirs):
        with pytest.raises(ValueError):
            rec._replace(colour="red")
    assert ours.size() == theirs.size() == 3 and ours.label == theirs.label == "1:a"
    assert ours[1] == ours.name and ours[-1] == () and len(ours) == 4
    kind, name, data, extra = ours
    assert (kind, name, data, extra) == (1, "a", b"xyz", ())
    assert isinstance(ours, tuple)
    assert OURS.__doc__ == THEIRS.__doc__ == "A test record."
    assert OURS.kind.__doc__ == THEIRS.kind.__doc__
    assert OURS.__module__ == THEIRS.__module__ == __name__
    assert OURS.__annotations__ == THEIRS.__annotations__ or \
        set(OURS.__annotations__) == set(THEIRS.__annotations__)  # strings here, evaluated types there


def test_records_are_immutable_and_slotted() -> None:
    ours = OURS(1, "a")
    with pytest.raises(AttributeError):
        ours.kind = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ours.colour = "red"  # type: ignore[attr-defined]
    assert not hasattr(ours, "__dict__")


def test_pickle_copy_and_match() -> None:
    ours = OURS(1, "a", b"x", (2,))
    for clone in (pickle.loads(pickle.dumps(ours)), copy.copy(ours), copy.deepcopy(ours)):
        assert type(clone) is OURS and clone == ours
    match ours:
        case OURS(kind, name, data=b"x"):
            assert (kind, name) == (1, "a")
        case _:
            pytest.fail("positional match on a record failed")


def test_class_definitions_typing_refuses_are_refused() -> None:
    with pytest.raises(TypeError):
        class Bad(records.NamedTuple):  # a default before a required field
            a: int = 0
            b: int  # type: ignore[misc]
    with pytest.raises(AttributeError):
        class Bad2(records.NamedTuple):
            a: int

            def _replace(self, **kwargs: object) -> Bad2:  # type: ignore[override]
                return self
    with pytest.raises(ValueError):
        class Bad3(records.NamedTuple):
            _a: int


def test_a_record_without_fields_and_one_with_one_field() -> None:
    class Nothing(records.NamedTuple):
        pass

    class One(records.NamedTuple):
        value: int

    assert Nothing() == () and repr(Nothing()) == "Nothing()"
    assert One(5) == (5,) and One(value=6).value == 6 and repr(One(5)) == "One(value=5)"


def test_the_wire_records_are_built_by_it() -> None:
    """PDV, a record of ul/pdu.py, is one of ours (no typing at run time) and still a namedtuple."""
    assert issubclass(PDV, tuple) and PDV.__mro__[1].__module__ == records.__name__
    assert PDV(1, 2, b"x")._replace(control=3) == (1, 3, b"x")


def test_importing_records_and_typenames_does_not_import_typing() -> None:
    probe = "import sys, dcmnet_cli.ul.records, dcmnet_cli.ul.typenames; print('typing' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "False", done.stderr


def test_typenames_stand_ins_behave_at_run_time() -> None:
    """ul/typenames.py: the run-time stand-ins for typing's names do what the modules using them need."""
    from dcmnet_cli.ul import typenames

    alias = typenames.Union[int, bytes, None]  # a run-time alias (dimse/connection.py's Event is one)
    assert isinstance(3, alias) and isinstance(b"", alias) and isinstance(None, alias)
    assert not isinstance("text", alias)
    assert typenames.Union[int] is int
    marker = object()
    assert typenames.cast(int, marker) is marker
    assert typenames.Final[int] is typenames.Final and typenames.Any is object
    assert typenames.TYPE_CHECKING is False

    class Encodes(typenames.Protocol):
        def encode(self) -> bytes: ...

    class Concrete(Encodes):
        def encode(self) -> bytes:
            return b"x"

    assert Concrete().encode() == b"x"
