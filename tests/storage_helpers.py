"""Helpers for the Storage SCP tests: small deterministic data sets, and a raw C-STORE client built on the
package's own SCU pieces (``open_association``, ``Channel.send_message``, ``c_store_rq``). 127.0.0.1 only."""

from __future__ import annotations

import os
import struct
import time
from itertools import islice
from pathlib import Path

import pytest

from dcmnet_cli.dimse.assembler import CommandReceived
from dcmnet_cli.dimse.commandset import Message, c_store_rq
from dcmnet_cli.dimse.fragment import fragment_message
from dcmnet_cli.transport.client import Timeouts, open_association, release
from dcmnet_cli.ul.association import Aborted
from dcmnet_cli.ul.negotiation import build_contexts, build_request

LOOPBACK = "127.0.0.1"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
RLE = "1.2.840.10008.1.2.5"
TIMEOUTS = Timeouts(connect=5.0, acse=5.0, dimse=10.0, network=10.0)


def require_tool(name: str) -> str:
    """A DCMTK tool's path; missing → fail under CI=true, skip otherwise."""
    import shutil

    path = shutil.which(name)
    if path is None:
        message = f"DCMTK tool {name} not found on PATH"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


# ------------------------------------------------------------------------------------------ data sets

def _el(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    """Explicit VR little endian element (PS3.5 §7.1.2), padded to even length."""
    if len(value) & 1:
        value += b"\0" if vr in (b"UI", b"OB") else b" "
    if vr in (b"OB", b"OW", b"UN", b"UT", b"SQ"):
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def raw_dataset(sop_class: str, sop_instance: str, payload: bytes = b"", patient_id: str | None = None) -> bytes:
    """A minimal data set in explicit VR LE whose UIDs may be hostile (pydicom would refuse to write them)."""
    parts = [_el(0x0008, 0x0016, b"UI", sop_class.encode("latin-1")),
             _el(0x0008, 0x0018, b"UI", sop_instance.encode("latin-1"))]
    if patient_id is not None:
        parts.append(_el(0x0010, 0x0020, b"LO", patient_id.encode("latin-1")))
    if payload:
        parts.append(_el(0x7FE0, 0x0010, b"OB", payload))
    return b"".join(parts)


def payload(seed: int, size: int) -> bytes:
    """Deterministic bytes that differ per seed."""
    block = bytes((seed * 31 + i * 7) & 0xFF for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def image_dataset(instance: str, rows: int = 16, cols: int = 16, frames: int = 1, bits: int = 16, seed: int = 1,
                  patient_id: str = "PAT-1"):
    """A small pydicom image (Secondary Capture) with deterministic pixels, explicit VR LE file meta."""
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.SOPClassUID = SC_IMAGE
    ds.SOPInstanceUID = instance
    ds.PatientID = patient_id
    ds.PatientName = "Test^Patient"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.9.7781.99.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7781.99.1.1"
    ds.Modality = "OT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = payload(seed, rows * cols * frames * bits // 8)
    ds["PixelData"].VR = "OW" if bits == 16 else "OB"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SC_IMAGE
    ds.file_meta.MediaStorageSOPInstanceUID = instance
    return ds


def meta_length(path: Path) -> int:
    """Bytes of preamble + DICM + File Meta group of a Part-10 file."""
    head = path.read_bytes()[:144]
    assert head[128:132] == b"DICM"
    return 132 + 12 + struct.unpack_from("<I", head, 140)[0]


def body(path: Path) -> bytes:
    data = path.read_bytes()
    return data[meta_length(path):]


def assert_same_dataset(source: Path, received: Path, swap16: bool = False) -> None:
    """Every element of the source equals the received one; pixel data byte-identical."""
    import pydicom

    src, dst = pydicom.dcmread(source), pydicom.dcmread(received)
    for element in src:
        if element.tag == 0x7FE00010:
            continue
        assert element.tag in dst, f"{element.tag} missing"
        assert dst[element.tag].value == element.value, element.keyword
    pixels = dst.PixelData
    if swap16:
        swapped = bytearray(pixels)
        swapped[0::2], swapped[1::2] = pixels[1::2], pixels[0::2]
        pixels = bytes(swapped)
    assert pixels == src.PixelData
    assert dst.file_meta.MediaStorageSOPInstanceUID == src.SOPInstanceUID


# ------------------------------------------------------------------------------------------ raw client

def associate(port: int, sop_classes=((SC_IMAGE, (EXPLICIT_LE,)),), calling: str = "RAWSCU"):
    rq = build_request("ANY-SCP", calling, build_contexts(sop_classes))
    return open_association(LOOPBACK, port, rq, TIMEOUTS)


def context_for(channel, sop_class: str = SC_IMAGE) -> int:
    return next(c.context_id for c in channel.assoc.contexts.values() if c.abstract_syntax == sop_class)


def wait_response(channel, timeout: float = 10.0) -> Message:
    deadline = time.monotonic() + timeout
    while True:
        event = channel.next_event(max(0.1, deadline - time.monotonic()))
        if event is None or isinstance(event, Aborted):
            raise AssertionError(f"association ended while waiting for a response: {event}")
        if isinstance(event, CommandReceived) and event.message.is_response:
            return event.message


def store(channel, dataset: bytes, sop_instance: str, sop_class: str = SC_IMAGE, context_id: int | None = None) -> int:
    """One C-STORE; returns the response status."""
    cid = context_id or context_for(channel, sop_class)
    channel.send_message(cid, c_store_rq(channel.next_message_id(), sop_class, sop_instance), dataset)
    return wait_response(channel).status


def partial_pdu(channel) -> int:
    """PDUs of at most 128 KiB, whatever listen accepts (4 MiB by default): "the first N PDUs" is then part of
    a data set of a few hundred KB, as these tests mean."""
    return min(channel.assoc.peer_max_pdu or 131056, 131056)


def send_partial(channel, dataset: bytes, sop_instance: str, pdus: int, sop_class: str = SC_IMAGE) -> None:
    """Send the command and only the first ``pdus`` P-DATA-TF PDUs of the data set (then stall)."""
    cid = context_for(channel, sop_class)
    channel.partial_message_id = channel.next_message_id()  # for send_rest
    message = c_store_rq(channel.partial_message_id, sop_class, sop_instance)
    for pdu in islice(fragment_message(cid, message.encode(), dataset, partial_pdu(channel)), pdus):
        channel.assoc.send_pdata(pdu)
        channel.flush()


def send_rest(channel, dataset: bytes, sop_instance: str, pdus: int, sop_class: str = SC_IMAGE) -> None:
    """The remaining PDUs after :func:`send_partial` (same message ID rule: re-derive the fragments)."""
    cid = context_for(channel, sop_class)
    message = c_store_rq(channel.partial_message_id, sop_class, sop_instance)
    for pdu in islice(fragment_message(cid, message.encode(), dataset, partial_pdu(channel)), pdus, None):
        channel.assoc.send_pdata(pdu)
        channel.flush()


def close_association(channel) -> None:
    release(channel, 5.0)


def temps(root: Path) -> list[Path]:
    """Temporaries below ``root``: named ones (``.dcmnet-tmp-*``), and the unnamed ones (O_TMPFILE) a
    live process holds open in it, which ``/proc/PID/fd`` shows as ``ROOT/#INODE (deleted)``."""
    found = list(root.rglob(".dcmnet-tmp-*"))
    prefix = os.path.realpath(root) + "/#"
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for entry in os.scandir(fd_dir):
                link = os.readlink(entry.path)
                if link.startswith(prefix) and link.endswith(" (deleted)"):
                    found.append(Path(link[:-len(" (deleted)")]))
        except OSError:  # a process or descriptor gone meanwhile
            continue
    return found


def wait_until(predicate, timeout: float = 15.0) -> bool:
    """Bounded wait for a condition another process makes true (file system effects of the server); the
    timeout is generous: it only runs out when the condition never comes (a loaded CI machine is slow)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def files(root: Path) -> list[Path]:
    """Every file below ``root`` but listen's index (``.dcmnet-index.sqlite`` and its -wal/-shm, issue 11)."""
    return sorted(p for p in root.rglob("*") if (p.is_file() or p.is_symlink())
                  and not p.name.startswith(".dcmnet-index.sqlite"))
