"""Re-encoding a file into a syntax the peer accepted, through pydicom: only when nothing the file is
in was accepted (PS3.5 conversions between uncompressed syntaxes, decompression where pydicom can)."""

from __future__ import annotations

from ...errors import NoAcceptedContext
from ...part10.syntaxes import DEFLATED_LE, EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE, UNCOMPRESSED, syntax_name
from ..dicomfiles import DicomFile
from .store_plan import TARGET_PREFERENCE


_SWAP_WIDTH = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def convert(file: DicomFile, target: str) -> bytes:
    """Re-encode the data set of ``file`` in ``target`` through pydicom; InputError-free, raises
    NoAcceptedContext with the reason when pydicom cannot do it (no codec, broken file)."""
    try:
        return _convert(file, target)
    except NoAcceptedContext:
        raise
    except Exception as error:  # pydicom's errors are not one family
        hint = ""
        if "missing dependencies" in str(error) or "numpy" in str(error).lower():
            hint = ' (install the decoders: pip install "dcmnet[codecs]")'
        raise NoAcceptedContext(
            f"{file.path}: the peer accepted none of the syntaxes proposed for this file's own transfer syntax "
            f"{syntax_name(file.transfer_syntax)}, and converting it to {syntax_name(target)} failed: {error}{hint}"
        ) from None


def _convert(file: DicomFile, target: str) -> bytes:
    import zlib

    import pydicom
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    if target not in TARGET_PREFERENCE:
        raise NoAcceptedContext(
            f"{file.path}: the peer accepted only {syntax_name(target)} for {file.sop_class_uid}; "
            f"dcmnet does not compress to that syntax (the file is {syntax_name(file.transfer_syntax)})"
        )
    ds = pydicom.dcmread(file.path, force=not file.has_meta)
    source = file.transfer_syntax
    if source not in UNCOMPRESSED and source != DEFLATED_LE:
        # Keep the SOP Instance UID: pydicom makes a new one by default, and the peer answers 0xA900 when
        # the data set's UID differs from the command's. Raises when no decoder is installed.
        ds.decompress(generate_instance_uid=False)
        source = EXPLICIT_LE
    source_big = source == EXPLICIT_BE
    target_big = target == EXPLICIT_BE
    if source_big != target_big:
        _swap_bytes(ds)
    buffer = DicomBytesIO()
    buffer.is_little_endian = not target_big
    buffer.is_implicit_VR = target == IMPLICIT_LE
    write_dataset(buffer, ds)
    data = buffer.getvalue()
    if target == DEFLATED_LE:  # PS3.5 A.5: raw deflate, no zlib header
        packer = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = packer.compress(data) + packer.flush()
    return data


def _swap_bytes(ds) -> None:  # type: ignore[no-untyped-def]
    """pydicom keeps OW/OF/OL/OD/OV values as bytes in the source byte order: swap them for the target."""
    from array import array

    codes = {2: "H", 4: "I", 8: "Q"}
    for element in ds.iterall():
        width = _SWAP_WIDTH.get(element.VR)
        value = element.value
        if width and isinstance(value, (bytes, bytearray)) and len(value) % width == 0:
            words = array(codes[width], value)
            words.byteswap()
            element.value = words.tobytes()


def class_name(uid: str) -> str:
    """A SOP class's registry name (pydicom's, only on this error path), or the UID itself."""
    try:
        import pydicom.uid

        name = pydicom.uid.UID(uid).name
        return name if name != uid else uid
    except Exception:
        return uid
