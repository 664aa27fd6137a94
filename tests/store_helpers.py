"""Test data for ``dcmnet store``: small, deterministic DICOM files made with pydicom, and comparisons.

Every UID is derived from a name, every pixel from a formula, so two runs write the same bytes.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from array import array
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    RLELossless,
)

from dcmnet_cli.dimse.commandset import C_STORE_RQ, c_store_rsp
from dcmnet_cli.services.dicomfiles import read_meta
from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity, MessageHandler
from dcmnet_cli.ul.negotiation import AcceptorPolicy

from helpers.procs import LOOPBACK, serving

ROOT = "1.2.826.0.1.3680043.8.498."
SYNTAXES = {
    "explicit": ExplicitVRLittleEndian,
    "implicit": ImplicitVRLittleEndian,
    "big": ExplicitVRBigEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
    "rle": RLELossless,
}


def uid(name: str) -> str:
    return ROOT + str(int(hashlib.sha256(name.encode()).hexdigest()[:24], 16))[:30]


def pixels(count: int, seed: int) -> bytes:
    return bytes((i * 7 + seed * 13 + (i >> 8)) & 0xFF for i in range(count))


def make_dataset(name: str, sop_class: str = CTImageStorage, rows: int = 64, columns: int = 64, frames: int = 1,
                 bits: int = 16) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid(name)
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series-" + sop_class)
    ds.Modality = "MR" if sop_class == MRImageStorage else "CT"
    ds.PatientName = "Test^Store"
    ds.PatientID = "STORE-1"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = int(hashlib.sha256(name.encode()).hexdigest()[:4], 16)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PixelSpacing = [0.5, 0.5]
    ds.WindowCenter = 40
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixels(rows * columns * frames * bits // 8, len(name))
    ds["PixelData"].VR = "OW" if bits > 8 else "OB"
    return ds


def write(path: Path, ds: Dataset, syntax: str = ExplicitVRLittleEndian, meta: bool = True) -> Path:
    """Write ``ds`` as a Part-10 file in ``syntax`` (or a bare data set with ``meta=False``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = ds.copy()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if syntax == RLELossless:
        ds.compress(RLELossless, encoding_plugin="pydicom")
    ds.file_meta.TransferSyntaxUID = syntax
    if meta:
        ds.save_as(path, enforce_file_format=True)
    else:
        del ds.file_meta
        ds.save_as(path, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True, enforce_file_format=False)
    return path


def make_file(folder: Path, name: str, kind: str = "explicit", **kwargs) -> Path:  # type: ignore[no-untyped-def]
    return write(folder / f"{name}.dcm", make_dataset(name, **kwargs), SYNTAXES[kind])


def received(folder: Path) -> dict[str, Path]:
    """Files an SCP wrote, by SOP Instance UID (not listen's index beside them, issue 11)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith(".dcmnet-index"):
            found[read_meta(path).sop_instance_uid] = path
    return found


def words(ds: Dataset, syntax: str) -> list[int]:
    """Pixel Data as 16-bit values, whatever the byte order it was written in."""
    data = array("H", ds.PixelData)
    if syntax == ExplicitVRBigEndian:
        data.byteswap()
    return list(data)


def assert_same(source: Path, copy: Path, *, streamed: bool = True) -> None:
    """The copy holds the same data set: equal element values, identical pixel data.

    ``streamed``: the data set bytes themselves are identical (the file went unconverted and the SCP
    wrote it bit-preserving).
    """
    src_meta, dst_meta = read_meta(source), read_meta(copy)
    assert dst_meta.sop_instance_uid == src_meta.sop_instance_uid
    assert dst_meta.sop_class_uid == src_meta.sop_class_uid
    src, dst = pydicom.dcmread(source, force=True), pydicom.dcmread(copy)
    for element in src:
        if element.tag == 0x7FE00010:
            continue
        assert element.tag in dst, f"{element.keyword} missing in {copy}"
        assert dst[element.tag].value == element.value, f"{element.keyword}: {dst[element.tag].value!r} != {element.value!r}"
    assert set(dst.keys()) == set(src.keys())
    src_syntax, dst_syntax = src_meta.transfer_syntax, dst_meta.transfer_syntax
    if "PixelData" not in src:
        pass
    elif src_syntax == dst_syntax:
        assert dst.PixelData == src.PixelData
    elif src.BitsAllocated == 16:
        assert words(dst, dst_syntax) == words(src, src_syntax)
    else:
        assert dst.PixelData == src.PixelData
    if streamed:
        assert dst_syntax == src_syntax
        with open(source, "rb") as a, open(copy, "rb") as b:
            a.seek(src_meta.offset)
            b.seek(dst_meta.offset)
            assert a.read() == b.read(), "data set bytes differ"


# --------------------------------------------------------------------------- an in-process Storage SCP


class _StoreHandler(MessageHandler):
    """Answers every C-STORE with ``status_for(sop_instance_uid, association_index)`` and records it."""

    def __init__(self, scp: "ScriptedStorageSCP") -> None:
        self.scp = scp

    def begin(self, session, context_id, message) -> None:  # type: ignore[no-untyped-def]
        self.channel, self.context_id, self.message = session.driver, context_id, message
        self.size = 0

    def fragment(self, data, last) -> None:  # type: ignore[no-untyped-def]
        self.size += len(data)
        self.scp.bytes_received += len(data)

    def complete(self, dataset: bytes | None) -> None:
        uid_ = self.message.affected_sop_instance_uid
        with self.scp.lock:
            association = self.scp.associations.get(self.channel, 0)
            self.scp.per_association[association] = self.scp.per_association.get(association, 0) + 1
            count = self.scp.per_association[association]
        if self.scp.abort_after is not None and association == 1 and count > self.scp.abort_after:
            self.channel.abort()  # drop the first association mid-run, before answering
            return
        with self.scp.lock:
            self.scp.stored.append((uid_, self.size, self.scp.contexts_of(self.channel, self.context_id)))
        self.channel.send_message(self.context_id, c_store_rsp(self.message.message_id, self.scp.status,
                                                               self.message.affected_sop_class_uid, uid_))


class ScriptedStorageSCP(ApplicationEntity):
    """Our own ApplicationEntity with a C-STORE handler answering a fixed status."""

    def __init__(self, status: int = 0x0000, abort_after: int | None = None) -> None:
        super().__init__(AcceptorPolicy(ae_title="SCRIPTED", contexts=lambda uid_: ALL_UNCOMPRESSED))
        self.handlers[C_STORE_RQ] = lambda: _StoreHandler(self)
        self.status = status
        self.abort_after = abort_after
        self.lock = threading.Lock()
        self.stored: list[tuple[str, int, str]] = []
        self.bytes_received = 0  # data set bytes so far, all C-STOREs together (a test waits on it)
        self.associations: dict[object, int] = {}
        self.per_association: dict[int, int] = {}

    def serve(self, channel) -> None:  # type: ignore[no-untyped-def]
        with self.lock:
            self.associations[channel] = len(self.associations) + 1
        super().serve(channel)

    @staticmethod
    def contexts_of(channel, context_id: int) -> str:  # type: ignore[no-untyped-def]
        return channel.assoc.contexts[context_id].transfer_syntax


@contextmanager
def scripted_scp(status: int = 0x0000, abort_after: int | None = None) -> Iterator[tuple[int, ScriptedStorageSCP]]:
    """A Server on 127.0.0.1 (free port) in a thread, always stopped and joined."""
    entity = ScriptedStorageSCP(status, abort_after)
    with serving(entity, "scripted-scp") as port:
        yield port, entity


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound then released)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def storescp_argv(port: int, out: Path, *flags: str) -> list[str]:
    """DCMTK storescp writing bit-preserving into ``out`` (+B), without host lookups."""
    return ["storescp", "-dhl", "+B", "-od", str(out), *flags, str(port)]



def cut_after_open(monkeypatch, path: Path) -> None:  # type: ignore[no-untyped-def]
    """A writer racing ``store``: ``path`` is cut to half its size right after store's ``open_dataset``
    has checked it (the other files are left alone)."""
    import os

    import dcmnet_cli.services.scu.store as store_module

    real_open = store_module.open_dataset

    def open_then_cut(file):  # type: ignore[no-untyped-def]
        fd = real_open(file)
        if file.path == str(path):
            os.truncate(file.path, file.size // 2)
        return fd

    monkeypatch.setattr(store_module, "open_dataset", open_then_cut)
