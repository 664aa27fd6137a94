"""Locks for state that association threads share (storage totals, folder caches, hook counts).

The driver decides the concurrency model (one thread per association today); services take their
locks from here so that decision lives in one layer, and another driver can swap it.
"""

from __future__ import annotations

import threading

Lock = threading.Lock
"""A mutual-exclusion lock for state shared between the associations of one process."""
