"""Classes of :mod:`ssl`, named without importing it: ``ssl`` costs milliseconds of start-up and is needed
only when TLS is in use (then it is loaded, and so are its sockets and errors).

``sys.modules["ssl"]`` may also be a half-initialised module: another thread importing it for the first
time (a C-FIND handler loading pydicom pulls ``ssl`` in) while this one checks a socket or an error. Such
a module has no classes yet, and no TLS socket or TLS error can exist before they do, so a missing class
means "not TLS" here instead of an AttributeError in the middle of a transfer.
"""

from __future__ import annotations

import sys


def ssl_classes(*names: str) -> tuple[type, ...]:
    """The ``ssl`` classes ``names`` that exist now (none while ``ssl`` is not or not fully loaded), for
    ``isinstance``: ``isinstance(x, ())`` is False."""
    module = sys.modules.get("ssl")
    if module is None:
        return ()
    found = [getattr(module, name, None) for name in names]
    return tuple(cls for cls in found if isinstance(cls, type)) if None not in found else ()
