"""Query/Retrieve test helpers: a DCMTK ``dcmqrscp`` archive loaded with pydicom datasets, and test data.

Reused by the find, move and get tests; keep :func:`dcmqrscp_server`'s interface stable::

    with dcmqrscp_server(tmp_path, datasets, aet="QRSCP", move_destinations={"DEST": ("127.0.0.1", port)}) as (port, aet):
        ...

Every address is 127.0.0.1 (dcmqrscp itself binds all interfaces; nothing here connects elsewhere).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from helpers.procs import LOOPBACK, base_env, free_port, running_server, serving

ROOT = "1.2.826.0.1.3680043.8.498."
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def uid(name: str) -> str:
    """A deterministic UID derived from ``name``."""
    return ROOT + str(int(hashlib.sha256(name.encode()).hexdigest()[:24], 16))[:30]


def write_config(path: Path, dbdir: Path, port: int, aet: str,
                 move_destinations: Mapping[str, tuple[str, int]] | None = None) -> Path:
    """A dcmqrscp.cfg: one storage area for ``aet`` accepting any peer, destinations in the HostTable."""
    lines = [
        f"NetworkTCPPort  = {port}",
        "MaxPDUSize      = 16384",
        "MaxAssociations = 16",
        "",
        "HostTable BEGIN",
    ]
    for dest_aet, (host, dest_port) in (move_destinations or {}).items():
        lines.append(f"{dest_aet.lower()}_entry = ({dest_aet}, {host}, {dest_port})")
    lines += [
        "HostTable END",
        "",
        "VendorTable BEGIN",
        "VendorTable END",
        "",
        "AETable BEGIN",
        f"{aet} {dbdir} RW (200, 1024mb) ANY",
        "AETable END",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def write_part10(path: Path, ds: Dataset) -> Path:
    """``ds`` as a Part-10 file in explicit VR little endian."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = ds.copy()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def load_into(port: int, aet: str, files: list[Path], timeout: float = 30.0) -> None:
    """Send ``files`` to the archive with DCMTK's storescu (TCP_NODELAY); raise on any failure."""
    if not files:
        return
    storescu = shutil.which("storescu")
    if storescu is None:
        raise RuntimeError("storescu not found")
    done = subprocess.run([storescu, "-aet", "LOADER", "-aec", aet, LOOPBACK, str(port), *map(str, files)],
                          capture_output=True, text=True, timeout=timeout, env=base_env(dcmtk=True),
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"storescu failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


@contextmanager
def dcmqrscp_server(tmp_path: Path, datasets: Iterable[Dataset], aet: str = "QRSCP",
                    move_destinations: Mapping[str, tuple[str, int]] | None = None,
                    extra_args: Iterable[str] = ()) -> Iterator[tuple[int, str]]:
    """Run dcmqrscp on a free port with ``datasets`` stored in it; yields ``(port, aet)``; always stops it.

    dcmqrscp forks a child per association (its --single-process mode exits after the first one); on
    exit the children still running are terminated by PID, then the server itself.
    A C-MOVE destination must be listed in ``move_destinations`` (AE title → (host, port)).
    """
    root = Path(tmp_path) / f"dcmqrscp-{aet}"
    dbdir, files_dir = root / "db", root / "input"
    dbdir.mkdir(parents=True, exist_ok=True)
    files = [write_part10(files_dir / f"{index:04d}.dcm", ds) for index, ds in enumerate(datasets)]
    port = free_port()
    config = write_config(root / "dcmqrscp.cfg", dbdir, port, aet, move_destinations)
    argv = [shutil.which("dcmqrscp") or "dcmqrscp", "-c", str(config), *extra_args, str(port)]
    with running_server(argv, port, dcmtk=True, cwd=root) as server:
        try:
            load_into(port, aet, files)
            yield port, aet
        finally:
            _stop_children(server.pid)


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (Linux /proc): dcmqrscp forks one child per association."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _stop_children(pid: int) -> None:
    """Terminate the association children of the dcmqrscp we started (by PID, never by name)."""
    import os
    import signal

    for child in _children(pid):
        try:
            os.kill(child, signal.SIGTERM)
        except ProcessLookupError:
            pass


# ------------------------------------------------------------------------------------- test data

JAPANESE_NAME = "Yamada^Tarou=山田^太郎=やまだ^たろう"
UTF8_NAME = "Müller^Zoë"
GREEK_NAME = "Διονυσιος^Ελένη"


def patients() -> list[dict]:
    """Three patients: ASCII, UTF-8 (ISO_IR 192) and Japanese (ISO 2022 IR 87)."""
    return [
        {"PatientID": "PAT001", "PatientName": "Doe^John", "PatientBirthDate": "19700101", "PatientSex": "M",
         "charset": None},
        {"PatientID": "PAT002", "PatientName": UTF8_NAME, "PatientBirthDate": "19800202", "PatientSex": "F",
         "charset": "ISO_IR 192"},
        {"PatientID": "PAT003", "PatientName": JAPANESE_NAME, "PatientBirthDate": "19900303", "PatientSex": "M",
         "charset": ["", "ISO 2022 IR 87"]},
    ]


# (patient index, study name, date, description, [(series name, modality, images)])
STUDIES: tuple[tuple[int, str, str, str, tuple[tuple[str, str, int], ...]], ...] = (
    (0, "s1", "20240115", "CT HEAD", (("s1a", "CT", 2), ("s1b", "CT", 1))),
    (0, "s2", "20240610", "MR KNEE", (("s2a", "MR", 2),)),
    (1, "s3", "20241120", "CT CHEST", (("s3a", "CT", 1),)),
    (2, "s4", "20231231", "MR BRAIN", (("s4a", "MR", 1), ("s4b", "MR", 1))),
)


def make_datasets() -> list[Dataset]:
    """Small deterministic instances (no pixel data): 3 patients, 4 studies, 6 series, 8 images."""
    people = patients()
    result: list[Dataset] = []
    for patient_index, study, date, description, series_list in STUDIES:
        person = people[patient_index]
        for series_number, (series, modality, images) in enumerate(series_list, start=1):
            for number in range(1, images + 1):
                ds = Dataset()
                if person["charset"]:
                    ds.SpecificCharacterSet = person["charset"]
                ds.SOPClassUID = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
                ds.SOPInstanceUID = uid(f"{series}-img{number}")
                ds.StudyInstanceUID = uid(study)
                ds.SeriesInstanceUID = uid(series)
                ds.PatientID = person["PatientID"]
                ds.PatientName = person["PatientName"]
                ds.PatientBirthDate = person["PatientBirthDate"]
                ds.PatientSex = person["PatientSex"]
                ds.StudyDate = date
                ds.StudyTime = "101500"
                ds.StudyID = study.upper()
                ds.AccessionNumber = f"ACC{study.upper()}"
                ds.StudyDescription = description
                ds.ReferringPhysicianName = ""
                ds.Modality = modality
                ds.SeriesNumber = series_number
                ds.SeriesDescription = f"{description} {series}"
                ds.InstanceNumber = number
                result.append(ds)
    return result


# ------------------------------------------------------------------- a scripted C-FIND SCP (in-process)

Reply = tuple[int, "Dataset | bytes | None"]
"""One C-FIND-RSP of a script: (status, identifier as a Dataset, raw bytes, or None for no data set)."""


class ScriptedFindSCP:
    """Our own ApplicationEntity answering every C-FIND-RQ with ``script(identifier) -> [Reply, ...]``.

    Records each request as ``(abstract syntax, transfer syntax, identifier Dataset, A-ASSOCIATE-RQ)``.
    ``error_comment`` is attached to the final response when set.
    """

    def __init__(self, script, sop_classes=None, error_comment: str | None = None) -> None:  # type: ignore[no-untyped-def]
        import threading

        from dcmnet_cli.dimse.commandset import C_FIND_RQ
        from dcmnet_cli.services.query import MODELS
        from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity
        from dcmnet_cli.ul.negotiation import AcceptorPolicy

        supported = set(sop_classes if sop_classes is not None else (m.find for m in MODELS.values()))
        self.script = script
        self.error_comment = error_comment
        self.requests: list[tuple[str, str, Dataset, object]] = []
        self.lock = threading.Lock()
        policy = AcceptorPolicy(ae_title="FINDSCP", contexts=lambda uid_: ALL_UNCOMPRESSED if uid_ in supported else None)
        self.entity = ApplicationEntity(policy)
        self.entity.handlers[C_FIND_RQ] = lambda: _FindHandler(self)


class _FindHandler:
    def __init__(self, scp: ScriptedFindSCP) -> None:
        self.scp = scp
        self.parts: list[bytes] = []

    def begin(self, session, context_id, message) -> None:  # type: ignore[no-untyped-def]
        self.channel, self.context_id, self.message = session.driver, context_id, message

    def fragment(self, data, last) -> None:  # type: ignore[no-untyped-def]
        self.parts.append(bytes(data))

    def abandon(self) -> None:
        pass

    def refuse(self, session, event) -> None:  # type: ignore[no-untyped-def]
        session.answer(event.context_id, event.message, event.status, event.reason)

    def complete(self, dataset: bytes | None) -> None:
        self.parts.append(dataset or b"")
        from dcmnet_cli.dimse.commandset import c_find_rsp
        from dcmnet_cli.services.query import decode_identifier, encode_identifier

        context = self.channel.assoc.contexts[self.context_id]
        identifier = decode_identifier(b"".join(self.parts), context.transfer_syntax)
        with self.scp.lock:
            self.scp.requests.append((context.abstract_syntax, context.transfer_syntax, identifier,
                                      self.channel.assoc.request_pdu))
        replies = list(self.scp.script(identifier))
        sop_class = self.message.affected_sop_class_uid
        for index, (status, data) in enumerate(replies):
            if isinstance(data, Dataset):
                data = encode_identifier(data, context.transfer_syntax)
            last = index == len(replies) - 1
            comment = self.scp.error_comment if last else None
            self.channel.send_message(self.context_id, c_find_rsp(self.message.message_id, status, sop_class,
                                                                  has_dataset=data is not None, error_comment=comment),
                                      data)


@contextmanager
def scripted_find_scp(script, **kwargs) -> Iterator[tuple[int, ScriptedFindSCP]]:  # type: ignore[no-untyped-def]
    """A ScriptedFindSCP served on 127.0.0.1 (free port) in a thread; always stopped and joined."""
    scp = ScriptedFindSCP(script, **kwargs)
    with serving(scp.entity, "scripted-find-scp") as port:
        yield port, scp
