"""Join two sans-IO associations by an in-memory wire (h11's tests/helpers.py idea)."""

from __future__ import annotations

from dcmnet_cli.ul.association import Association


def pump(a: Association, b: Association, chunk: int | None = None) -> None:
    """Move bytes both ways until neither side has anything to send; ``chunk`` splits deliveries."""
    moved = True
    while moved:
        moved = False
        for src, dst in ((a, b), (b, a)):
            data = b"".join(bytes(x) for x in src.data_to_send())
            if not data:
                continue
            moved = True
            if chunk is None:
                dst.receive_data(data)
            else:
                for i in range(0, len(data), chunk):
                    dst.receive_data(data[i : i + chunk])


def events(assoc: Association) -> list:
    out = []
    while (event := assoc.next_event()) is not None:
        out.append(event)
    return out
