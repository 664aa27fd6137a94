"""Text from outside (a peer, a file name, a path typed with a line break) shown on one terminal line."""

from __future__ import annotations


def one_line(text: str) -> str:
    """Tabs, line breaks and other control characters (ESC included: no terminal sequences) shown as
    escapes (``\\n``, ``\\x1b``); every other character, non-ASCII too, as it is."""
    if text.isprintable() or not any(ord(c) < 32 or c == "\x7f" for c in text):  # isprintable: C speed
        return text
    return "".join(c if ord(c) >= 32 and c != "\x7f" else c.encode("unicode_escape").decode("ascii") for c in text)
