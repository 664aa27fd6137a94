"""Locks for state that association threads share (storage totals, folder caches, hook counts).

The driver decides the concurrency model (one thread per association today); services take their
locks from here so that decision lives in one layer, and another driver can swap it.
"""

from __future__ import annotations

from _thread import allocate_lock

Lock = allocate_lock
"""A mutual-exclusion lock for state shared between the associations of one process: ``threading.Lock``
itself, taken from ``_thread`` (``threading`` is start-up a one-association ``dcmnet store`` need not pay)."""
