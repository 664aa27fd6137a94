"""Where a received object goes below the output folder: the ``--filepath`` template filled from the
command, the association and (read back with pydicom, only when the template names them) the data set's
own elements, every value made path-safe (scenario G; changed values are reported)."""

from __future__ import annotations

import os
from typing import Callable

from ...dimse.commandset import Message
from ...dimse.status import CANNOT_UNDERSTAND
from ...part10.filenames import PathTemplate, TemplateError, escaped, safe_component
from ..session import AssociationReport


class StoreFailure(Exception):
    """A store that cannot succeed: ``status`` is the C-STORE-RSP to answer, ``comment`` its text."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment


def relative_path(template: PathTemplate | None, message: Message, report: AssociationReport, fd: int,
                  unsafe: Callable[[str], None]) -> str:
    """The object's path below the output folder; ``unsafe(detail)`` hears of every value changed."""
    sop_instance = message.affected_sop_instance_uid or ""
    if template is None:  # the default name: no other field to look at
        name = safe_component(sop_instance)
        if sop_instance and name != sop_instance:
            unsafe(f"SOPInstanceUID {escaped(sop_instance)!r} stored as {name!r}")
        return name + ".dcm"
    values: dict[str, str | None] = {"SOPInstanceUID": sop_instance, "SOPClassUID": message.affected_sop_class_uid,
                                     "CallingAET": report.calling_ae, "CalledAET": report.called_ae}
    if template.dataset_fields:
        values.update(dataset_values(fd, template.dataset_fields))
    for name in template.fields:
        raw = values.get(name)
        if raw and safe_component(raw) != raw:
            unsafe(f"{name} {escaped(raw)!r} stored as {safe_component(raw)!r}")
    try:
        return template.render(values)
    except TemplateError as error:
        raise StoreFailure(CANNOT_UNDERSTAND, str(error)[:64]) from None


def dataset_values(fd: int, keywords: tuple[str, ...]) -> dict[str, str | None]:
    """The template's elements, read with pydicom from the temporary file ``fd`` (stop before pixels)."""
    import pydicom
    from pydicom.datadict import tag_for_keyword
    from pydicom.multival import MultiValue

    tags = [int(tag_for_keyword(k) or 0) for k in keywords]  # keywords were checked when the template was parsed
    try:
        with os.fdopen(os.dup(fd), "rb") as handle:
            handle.seek(0)  # the duplicate shares the writer's offset (at the end)
            ds = pydicom.dcmread(handle, stop_before_pixels=True, specific_tags=[0x00080005, *tags])
            values: dict[str, str | None] = {}
            for keyword, tag in zip(keywords, tags):
                element = ds.get(tag)
                value = None if element is None or element.VR == "SQ" else element.value
                if isinstance(value, MultiValue):
                    value = "\\".join(str(v) for v in value)
                values[keyword] = None if value is None or value == "" else str(value)
    except Exception as error:  # pydicom raises many types for bad data
        raise StoreFailure(CANNOT_UNDERSTAND, f"cannot parse data set: {type(error).__name__}"[:64]) from None
    return values
