"""Whether the peer's next bytes are already here: the question a streaming command asks before it flushes
its output (``find`` prints a match as soon as it arrives, but writes a burst of them in one go).

:func:`more_arrived` is True when reading now would not wait: events decoded from bytes already read,
bytes not yet decoded (those of whole PDUs), TLS records decrypted but not read, or a socket with data
waiting in the kernel. A poll with no timeout costs about a microsecond, a write to a pipe whose reader
wakes up for each line several times that, and far more on the reader's side.

Bytes of a PDU whose rest is still on the way count as arrived (the driver reads on until the PDU is
whole): a peer that stops in the middle of a PDU, not between messages, delays the flush until it goes on
or a timeout ends the query (the error path flushes too).
"""

from __future__ import annotations

import select

from ..ul.typenames import Any


def more_arrived(driver: Any) -> bool:
    """True when :meth:`~.channel.Driver.next_event` can go on without waiting for the peer (see the module
    docstring). A driver without a socket (the in-memory wire of tests) says False: nothing waits."""
    if driver.conn.events_waiting:
        return True
    sock = getattr(driver, "sock", None)
    if sock is None or driver.closed:
        return False
    pending = getattr(sock, "pending", None)  # TLS: records already decrypted
    try:
        if pending is not None and pending():
            return True
        return bool(select.select((sock,), (), (), 0)[0])
    except (OSError, ValueError):  # closed under us: the next read says how it ended
        return False
