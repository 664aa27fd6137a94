"""Process groups of the programs ``listen`` runs (``--exec-on-*``): signals live in transport/.

Each hook runs in a session of its own (``start_new_session``), so its process group is its pid and
holds whatever it left running in the background.
"""

from __future__ import annotations

import os
import signal


def kill_group(pgid: int) -> bool:
    """SIGKILL every process of the group; False when none is left (or it is not ours)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
        return True
    except OSError:
        return False


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs."""
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False
