"""Small deterministic DICOM test data: N studies x M series x K images of 64x64 MONOCHROME2 CT.

    python scripts/gen_studies.py OUTDIR [--studies N] [--series M] [--images K]

Every UID is derived from the indices under dcmnet's root (1.2.826.0.1.3680043.9.7781.), so two runs
write identical files. Files are Part-10 (preamble, File Meta) in Explicit VR Little Endian, laid out as
OUTDIR/study{N}/series{M}/image{K}.dcm.
"""

from __future__ import annotations

import argparse
import sys
from array import array
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

ROOT = "1.2.826.0.1.3680043.9.7781."
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SIZE = 64


def uids(study: int, series: int = 0, image: int = 0) -> tuple[str, str, str]:
    """Study, series and SOP instance UIDs for 1-based indices (branch 100 of our root: test data)."""
    return (f"{ROOT}100.1.{study}", f"{ROOT}100.2.{study}.{series}", f"{ROOT}100.3.{study}.{series}.{image}")


def _pixels(seed: int) -> bytes:
    """A 64x64 unsigned 16-bit gradient that differs per image."""
    data = array("H", ((x * 16 + y * 8 + seed * 37) % 4096 for y in range(SIZE) for x in range(SIZE)))
    if sys.byteorder != "little":
        data.byteswap()
    return data.tobytes()


def make_image(study: int, series: int, image: int) -> Dataset:
    study_uid, series_uid, sop_uid = uids(study, series, image)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = f"ACC{study:04d}"
    ds.Modality = "CT"
    ds.Manufacturer = "dcmnet"
    ds.ReferringPhysicianName = ""
    ds.PatientName = f"TEST^PATIENT{study:02d}"
    ds.PatientID = f"DCMNET{study:04d}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = str(study)
    ds.SeriesNumber = series
    ds.InstanceNumber = image
    ds.ImagePositionPatient = [0, 0, image * 5]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = f"{ROOT}100.4.{study}.{series}"
    ds.SliceThickness = 5
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = SIZE
    ds.PixelSpacing = [1, 1]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelData = _pixels(study * 10_000 + series * 100 + image)
    return ds


def generate(outdir: Path, studies: int = 2, series: int = 2, images: int = 3) -> list[Path]:
    """Write the files and return their paths in order."""
    written = []
    for s in range(1, studies + 1):
        for r in range(1, series + 1):
            folder = outdir / f"study{s}" / f"series{r}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(1, images + 1):
                path = folder / f"image{i}.dcm"
                make_image(s, r, i).save_as(path, enforce_file_format=True)
                written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--studies", type=int, default=2)
    parser.add_argument("--series", type=int, default=2)
    parser.add_argument("--images", type=int, default=3)
    args = parser.parse_args(argv)
    paths = generate(args.outdir, args.studies, args.series, args.images)
    print(f"wrote {len(paths)} files under {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
