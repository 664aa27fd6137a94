"""Compare folders of DICOM files object by object: the same SOP instances in each, with byte-identical
data sets (everything after the File Meta, which every receiver writes anew) in the same transfer syntax.

    python scripts/compare_dicom.py DIR DIR [DIR ...]

Files are paired by their Media Storage SOP Instance UID; hidden files (an index) are ignored. Prints one
line per folder and a verdict; exits 0 when everything matches, 1 otherwise (with what differs).
"""

from __future__ import annotations

import hashlib
import struct
import sys
from pathlib import Path

LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def split(path: Path) -> tuple[dict[int, bytes], bytes]:
    """(File Meta elements by tag, the data set bytes after them) of a Part-10 file."""
    data = path.read_bytes()
    if data[128:132] != b"DICM":
        raise ValueError(f"{path}: not a DICOM Part-10 file")
    meta: dict[int, bytes] = {}
    offset = 132
    while data[offset:offset + 2] == b"\x02\x00":  # group 0002, explicit VR little endian (PS3.10 7.1)
        group, element = struct.unpack_from("<HH", data, offset)
        vr = data[offset + 4:offset + 6]
        if vr in LONG_VRS:
            (length,) = struct.unpack_from("<I", data, offset + 8)
            start = offset + 12
        else:
            (length,) = struct.unpack_from("<H", data, offset + 6)
            start = offset + 8
        meta[(group << 16) | element] = data[start:start + length]
        offset = start + length
    return meta, data[offset:]


def objects(folder: Path) -> dict[str, tuple[str, str]]:
    """SOP Instance UID -> (transfer syntax, SHA-256 of the data set) for every file below ``folder``."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        meta, dataset = split(path)
        uid = meta.get(0x00020003, b"").rstrip(b"\0 ").decode("ascii", "replace")
        syntax = meta.get(0x00020010, b"").rstrip(b"\0 ").decode("ascii", "replace")
        found[uid] = (syntax, hashlib.sha256(dataset).hexdigest())
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    folders = [Path(arg) for arg in argv]
    try:
        seen = {folder: objects(folder) for folder in folders}
    except (OSError, ValueError) as error:
        print(f"compare: {error}", file=sys.stderr)
        return 1
    first, reference = folders[0], seen[folders[0]]
    problems = []
    for folder in folders:
        print(f"{folder}: {len(seen[folder])} objects")
        for uid in sorted(set(reference) | set(seen[folder])):
            if uid not in seen[folder]:
                problems.append(f"{uid}: missing in {folder}")
            elif uid not in reference:
                problems.append(f"{uid}: in {folder}, not in {first}")
            elif seen[folder][uid] != reference[uid]:
                problems.append(f"{uid}: data set in {folder} differs from {first}")
    if problems or not reference:
        print("\n".join(problems) or f"no DICOM files in {first}", file=sys.stderr)
        return 1
    print(f"identical: the {len(reference)} data sets are byte for byte the same in all {len(folders)} folders")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
