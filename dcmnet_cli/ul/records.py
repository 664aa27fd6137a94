"""``NamedTuple`` for the wire records of ul/, dimse/ and part10/, without ``typing`` at run time.

Why: ``typing.NamedTuple`` turns every (string) annotation into a ``ForwardRef``, which compiles it; with
the ``import typing`` it needs (which pulls ``re``), that was about 15 ms of every start-up for 34 record
classes. Type checkers see ``typing.NamedTuple`` itself (the ``TYPE_CHECKING`` branch), so a record stays
fully typed under ``mypy --strict``; at run time the class statement builds a tuple subclass that behaves
like the ``collections.namedtuple`` that ``typing.NamedTuple`` builds (fields, defaults, ``_make``,
``_replace``, ``_asdict``, ``repr``, pickling, ``match``; immutable, no ``__dict__``; methods and docstrings
kept; ``__annotations__`` kept as the strings they are), without evaluating the annotations and without
compiling a ``__new__`` per class: about 3x cheaper per class than ``collections.namedtuple`` and 8x than
``typing.NamedTuple`` here (tests/test_records.py holds it to typing.NamedTuple's behaviour).

Usage, exactly as with ``typing``::

    from .records import NamedTuple      # or ..ul.records from dimse/ and part10/

    class PDV(NamedTuple):
        context_id: int
        data: bytes = b""

``TYPE_CHECKING`` is a plain ``False`` (mypy and pyright treat the name itself as the flag) so that this
module does not import ``typing`` either.
"""

from __future__ import annotations

TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import NamedTuple as NamedTuple
else:
    from _collections import _tuplegetter
    from types import FunctionType

    _PROHIBITED = frozenset({"__new__", "__init__", "__slots__", "__getnewargs__", "_fields", "_field_defaults",
                             "_make", "_replace", "_asdict", "_source", "_repr_format"})
    """What ``typing.NamedTupleMeta`` refuses to let a record override."""
    _NEW_GLOBALS = {"_tuple_new": tuple.__new__}
    _NEW_CODE = {}
    """``__new__`` code per arity; a record's own field names are put in with ``code.replace``, so a class
    costs no ``compile`` (``collections.namedtuple`` evals one ``__new__`` per class: half its cost)."""

    def _new_code(arity):
        code = _NEW_CODE.get(arity)
        if code is None:
            args = ", ".join(f"_{n}" for n in range(arity))
            namespace = {}
            exec(f"def __new__(_cls, {args}):\n    return _tuple_new(_cls, ({args}{',' if arity == 1 else ''}))\n",
                 _NEW_GLOBALS, namespace)
            code = _NEW_CODE[arity] = namespace["__new__"].__code__
        return code

    class _Record(tuple):
        """What every record shares; ``collections.namedtuple`` builds the same methods once per class."""

        __slots__ = ()
        _fields = ()
        _field_defaults = {}
        _repr_format = "()"

        @classmethod
        def _make(cls, iterable):
            result = tuple.__new__(cls, iterable)
            if len(result) != len(cls._fields):
                raise TypeError(f"Expected {len(cls._fields)} arguments, got {len(result)}")
            return result

        def _replace(self, /, **kwds):
            result = self._make(map(kwds.pop, self._fields, self))
            if kwds:
                raise ValueError(f"Got unexpected field names: {list(kwds)!r}")
            return result

        def __repr__(self):
            return self.__class__.__name__ + self._repr_format % self

        def _asdict(self):
            return dict(zip(self._fields, self))

        def __getnewargs__(self):
            return tuple(self)

    def _record(name, namespace):
        annotations = namespace.get("__annotations__", {})
        fields = tuple(annotations)
        defaults = []
        for field in fields:
            if field.startswith("_"):
                raise ValueError(f"Field names cannot start with an underscore: {field!r}")
            if field in namespace:
                defaults.append(namespace[field])
            elif defaults:
                raise TypeError(f"Non-default namedtuple field {field} cannot follow default field")
        code = _new_code(len(fields))
        new = FunctionType(code.replace(co_varnames=("_cls", *fields) + code.co_varnames[len(fields) + 1:]),
                           _NEW_GLOBALS, "__new__", tuple(defaults) or None)
        new.__qualname__ = f"{name}.__new__"
        body = {"__doc__": f"{name}({', '.join(fields)})", "__slots__": (), "_fields": fields,
                "_field_defaults": dict(zip(fields[len(fields) - len(defaults):], defaults)),
                "__new__": new, "__match_args__": fields, "__annotations__": dict(annotations),
                "_repr_format": f"({', '.join(f'{field}=%r' for field in fields)})"}
        for index, field in enumerate(fields):
            body[field] = _tuplegetter(index, f"Alias for field number {index}")
        for key, value in namespace.items():
            if key in _PROHIBITED:
                raise AttributeError(f"Cannot overwrite NamedTuple attribute {key}")
            if key not in fields and key != "__annotations__":
                body[key] = value
        return type(name, (_Record,), body)

    class _RecordMeta(type):
        def __new__(mcs, name, bases, namespace):
            if not bases:
                return super().__new__(mcs, name, bases, namespace)  # the NamedTuple base class itself
            if len(bases) != 1:
                raise TypeError(f"{name}: a record inherits from NamedTuple alone")
            return _record(name, namespace)

    class NamedTuple(metaclass=_RecordMeta):
        """Base of a record class: ``class X(NamedTuple): field: type`` as with ``typing.NamedTuple``."""
