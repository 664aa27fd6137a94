"""In-process Storage SCP fixtures for the unit tests of services/scp/store_handler.py and storage.py
(issue 15, ``make mutate``): one entity over the in-memory wire with its events, hooks, association
reports and a stand-in index; raw data sets; what is on disk."""

from __future__ import annotations

from pathlib import Path

from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from store_helpers import make_dataset
from wire import memory_peer

from dcmnet_cli.dimse.commandset import C_STORE_RQ, Message, c_store_rq
from dcmnet_cli.part10.sopclasses import storage_contexts
from dcmnet_cli.services.peer import Peer
from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity
from dcmnet_cli.services.scp.placement import TEMP_PREFIX
from dcmnet_cli.services.scp.storage import StorageConfig, StorageSCP
from dcmnet_cli.services.scp.store_handler import storage_handlers
from dcmnet_cli.transport.client import Timeouts
from dcmnet_cli.ul.negotiation import AcceptorPolicy

PEER = Peer("memory", 104, "MEMSCP")
TIMEOUTS = Timeouts(connect=5, acse=5, dimse=5, network=5)
NO_DATASET = 0x0101
WALKER_END = "element (7FE0,0010) at byte 480 declares 8192 bytes, 8189 present"[:64]  # the walker's words
WALKER_BAD_VR = "invalid VR b'\\x04\\x00' for element (0010,7A7A) at byte 202"


class Hooks:
    """Stands in for HookRunner: records every run (argv, environment, files)."""

    def __init__(self) -> None:
        self.runs: list[tuple[list[str], dict, list[str] | None]] = []

    def run(self, argv: list[str], env: dict, files: list[str] | None = None) -> None:
        self.runs.append((argv, env, files))

    def close(self, grace: float) -> None:
        pass


class Index:
    """Stands in for an IndexRef: ``get()`` returns the index, whose ``add``/``submit`` records or fails
    (``raise``: at once; ``later``: reported to the callback, as the index's own thread does)."""

    def __init__(self, fail: Exception | None = None, commit_before_success: bool = False,
                 how: str = "raise") -> None:
        self.added: list[tuple[str, dict, str, int]] = []
        self.fail = fail
        self.how = how
        if commit_before_success:  # only the PostgreSQL index has the attribute
            self.commit_before_success = True

    def get(self) -> "Index":
        return self

    def sync(self, timeout: float | None = None) -> bool:
        self.synced = timeout
        return True

    def add(self, path: str, values: dict, syntax: str, size: int) -> None:
        if self.fail is not None:
            raise self.fail
        self.added.append((path, values, syntax, size))

    def submit(self, path: str, values: dict, syntax: str, size: int, on_error) -> None:
        """The queued form (the index's own thread commits; a failure there is reported to ``on_error``)."""
        if self.fail is not None and self.how == "raise":
            raise self.fail
        if self.fail is not None:
            on_error(path, self.fail)
            return
        from dcmnet_cli.services.archive.extraction import attributes_of

        self.added.append((path, attributes_of(values), syntax, size))  # queued undecoded (RawValues)

    def write_due(self, queued: object = None) -> None:
        """Called after each C-STORE-RSP with what ``submit`` returned (a due batch written, or that row made
        ready, in the handler's thread): recorded."""
        self.made_ready = getattr(self, "made_ready", []) + [queued]


def raw(ds, implicit: bool = False, little: bool = True) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = little, implicit
    write_dataset(buffer, ds)
    return buffer.getvalue()


def on_disk(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


class Node:
    """One Storage SCP entity over the in-memory wire, with its events, hooks and association reports."""

    def __init__(self, out: Path, hooks: Hooks | None = None, syntaxes=ALL_UNCOMPRESSED, output: bool = True,
                 **config) -> None:
        self.out = out
        self.events: list = []
        self.ended: list = []
        self.hooks = hooks or Hooks()
        config.setdefault("fsync", False)
        self.scp = StorageSCP(StorageConfig(str(out) if output else None, **config), self.events.append,
                              hooks=self.hooks)
        self.scp.prepare()
        policy = AcceptorPolicy(ae_title="MEMSCP", contexts=storage_contexts(syntaxes, False, ALL_UNCOMPRESSED))
        self.entity = ApplicationEntity(policy, handlers=storage_handlers(self.scp), on_event=self.events.append,
                                        on_association_end=self._ended)

    def _ended(self, report) -> None:
        self.ended.append((report.stored, report.failed))
        self.scp.association_ended(report)

    def send(self, monkeypatch, requests: list[tuple], syntax: str = ExplicitVRLittleEndian,
             sop_class: str = CTImageStorage) -> list[Message]:
        """One association sending ``requests`` (sop_class, sop_instance, data or None) on one context;
        returns the C-STORE-RSP of each."""
        from dcmnet_cli.services.scu.association import associate, context_for
        from dcmnet_cli.transport.client import release
        from dcmnet_cli.ul.negotiation import build_contexts

        answers = []
        with memory_peer(self.entity, monkeypatch) as failures:
            session = associate(PEER, "MEMSCU", build_contexts([(sop_class, (syntax,))]), TIMEOUTS)
            context = context_for(session, sop_class).context_id
            for sop_class, sop_instance, data in requests:
                def build(mid: int, sop_class=sop_class, sop_instance=sop_instance, data=data) -> Message:
                    if data is None:
                        return Message(C_STORE_RQ, message_id=mid, affected_sop_class_uid=sop_class,
                                       affected_sop_instance_uid=sop_instance, priority=0,
                                       command_data_set_type=NO_DATASET)
                    return c_store_rq(mid, sop_class, sop_instance)
                mid = session.request(context, build, data)
                answers.append(session.response(mid, 5).message)
            release(session.driver, 5)
        assert not failures
        return answers

    def outcomes(self) -> list:
        return [e for e in self.events if e.event in ("stored", "received", "store-failed")]

    def temporaries(self) -> list[str]:
        found = [n for n in on_disk(self.out) if n.startswith(TEMP_PREFIX)] if self.out.exists() else []
        return found + sorted(self.scp._active)


def request(name: str, **kwargs) -> tuple[str, str, bytes]:
    ds = make_dataset(name, **kwargs)
    return CTImageStorage, ds.SOPInstanceUID, raw(ds)
