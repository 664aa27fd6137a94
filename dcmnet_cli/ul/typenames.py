"""The few names of :mod:`typing` that modules on the start-up path use, without importing ``typing``.

``import typing`` costs 5-15 ms of every ``dcmnet`` run here (it pulls in ``re``), for names that matter
only to the type checker. A module on the path of ``echo``, ``store`` or ``find`` imports them from here
instead: ``from ..ul.typenames import Any, Final, NamedTuple, Protocol, Union, cast``. Type checkers see
the real ``typing`` names (the ``TYPE_CHECKING`` branch re-exports them), so ``mypy --strict`` checks
exactly what it checked before; at run time:

* ``NamedTuple`` is :mod:`.records`' (the same records, built without ``typing``);
* ``Any``, ``Final`` and ``IO`` are placeholders: with ``from __future__ import annotations`` an annotation is
  never evaluated (``Any`` is ``object``, so ``dict[str, Any]`` in a run-time alias still works);
* ``Protocol`` is a plain base class (a protocol is a type checker's business; nothing here asks
  ``isinstance`` of one: ``typing`` would need ``runtime_checkable`` for that too);
* ``Union[A, B]`` is ``A | B`` (classes only: a string forward reference needs the real ``typing``);
* ``cast(type, value)`` returns ``value``, as ``typing.cast`` does.
"""

from __future__ import annotations

__all__ = ["TYPE_CHECKING", "IO", "Any", "Final", "NamedTuple", "Protocol", "Union", "cast"]

TYPE_CHECKING = False
"""``typing.TYPE_CHECKING``: type checkers take any name ``TYPE_CHECKING`` for it, imported or not."""

if TYPE_CHECKING:
    from typing import IO as IO, Any as Any, Final as Final, Protocol as Protocol, Union as Union, cast as cast

    from .records import NamedTuple as NamedTuple
else:
    from functools import reduce
    from operator import or_

    from .records import NamedTuple

    Any = object

    class _Subscriptable:
        __slots__ = ("_name",)

        def __init__(self, name):
            self._name = name

        def __getitem__(self, item):
            return self

        def __repr__(self):
            return f"dcmnet_cli.ul.typenames.{self._name}"

    Final = _Subscriptable("Final")
    IO = _Subscriptable("IO")

    class _Union(_Subscriptable):
        __slots__ = ()

        def __getitem__(self, items):
            return reduce(or_, items) if isinstance(items, tuple) else items

    Union = _Union("Union")

    class Protocol:
        """Run-time stand-in for ``typing.Protocol``: a plain base class."""

        __slots__ = ()

    def cast(typ, value):
        return value
