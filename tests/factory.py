"""Synthetic DICOM for tests and benchmarks (never real patient data)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom.data
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

UID_ROOT = "1.2.826.0.1.3680043.10.1337."


def uid() -> str:
    return generate_uid(prefix=UID_ROOT)


def bundled_files() -> list[Path]:
    """pydicom's bundled test files, listed from its package folder (no download)."""
    root = Path(pydicom.data.__file__).parent / "test_files"
    return sorted(p for p in root.rglob("*") if p.is_file())


def bundled_dicom_files() -> list[Path]:
    """Bundled files that pydicom reads as Part 10 with the four required UIDs."""
    from pydicom import dcmread

    out = []
    for path in bundled_files():
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
            continue
        if all(
            k in ds and ds[k].value
            for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
        ):
            out.append(path)
    return out


def make_dataset(
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    patient_name: str = "Doe^John",
    patient_id: str = "PID001",
    modality: str = "OT",
    study_date: str = "20240115",
    study_time: str = "101500",
    accession: str = "ACC001",
    rows: int = 64,
    columns: int = 64,
    instance_number: int = 1,
    series_number: int = 1,
    sop_class: str = SecondaryCaptureImageStorage,
    pixel_seed: int = 0,
    **extra: object,
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid or uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid or uid()
    ds.SeriesInstanceUID = series_uid or uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.AccessionNumber = accession
    ds.StudyID = "1"
    ds.ReferringPhysicianName = "Ref^Doc"
    ds.StudyDescription = "Synthetic study"
    ds.Modality = modality
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "Synthetic series"
    ds.InstanceNumber = instance_number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    rng = np.random.default_rng(pixel_seed)
    ds.PixelData = rng.integers(0, 4096, size=(rows, columns), dtype=np.uint16).tobytes()
    for key, value in extra.items():
        setattr(ds, key, value)
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def make_instance(**kwargs: object) -> bytes:
    return to_bytes(make_dataset(**kwargs))  # type: ignore[arg-type]


def ct_series(
    slices: int = 16,
    size: int = 64,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    spacing: float = 1.5,
    pixel_spacing: float = 0.7,
) -> Iterator[Dataset]:
    """An axial CT series with real geometry (int16, rescale -1024)."""
    study_uid = study_uid or uid()
    series_uid = series_uid or uid()
    frame_of_reference = uid()
    zz, yy, xx = np.mgrid[0:1, 0:size, 0:size]
    for index in range(slices):
        ds = make_dataset(
            study_uid=study_uid,
            series_uid=series_uid,
            modality="CT",
            sop_class=CTImageStorage,
            rows=size,
            columns=size,
            instance_number=index + 1,
            patient_name="Phantom^CT",
            patient_id="CT001",
        )
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = 1
        ds.RescaleIntercept = -1024
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, index * spacing]
        ds.PixelSpacing = [pixel_spacing, pixel_spacing]
        ds.SliceThickness = spacing
        ds.FrameOfReferenceUID = frame_of_reference
        values = ((xx[0] + yy[0] + index) % 2048).astype(np.int16)
        ds.PixelData = values.tobytes()
        yield ds


#: Bundled files in each kind of transfer syntax a retrieve may have to convert from.
MIXED_SYNTAX_FILES = (
    "MR_small_implicit.dcm",  # Implicit VR Little Endian
    "MR_small.dcm",  # Explicit VR Little Endian
    "MR_small_bigendian.dcm",  # Explicit VR Big Endian
    "image_dfl.dcm",  # Deflated Explicit VR Little Endian
    "SC_rgb_dcmtk_+eb+cr.dcm",  # JPEG Baseline
)


def mixed_syntax_study(study_uid: str) -> list[bytes]:
    """The ``MIXED_SYNTAX_FILES`` as one study, each with its own series and instance
    UIDs (several share their SOP Instance UID), each kept in its transfer syntax."""
    from pydicom import dcmread

    out = []
    for name in MIXED_SYNTAX_FILES:
        ds = dcmread(pydicom.data.get_testdata_file(name))
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid()
        ds.PatientID = "MIXED"
        buffer = io.BytesIO()
        ds.save_as(buffer)  # in its own transfer syntax (deflated written deflated)
        out.append(buffer.getvalue())
    return out
