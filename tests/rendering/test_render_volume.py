"""MPR and MIP on a synthetic phantom with real, non-trivial geometry.

The series: 64 x 64 pixels of 0.7 mm, 40 slices 1.5 mm apart, rows rotated
30 degrees about z, stored as signed 16-bit with Rescale Intercept -1024 and
decoded through the same pipeline as real frames. It holds a sphere
(1000, radius 9 mm) and a cylinder of radius 2 mm along an oblique line
(500), both at known patient coordinates.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from pydicom.dataset import Dataset

from noctis_pacs.rendering import (
    BadRenderParameter,
    Plane,
    Volume,
    VolumeError,
    apply_modality_lut,
    build_volume,
    decode_frame,
    mip,
    mpr,
)
from noctis_pacs.rendering.planes import trilinear

SIZE, SLICES = 64, 40
PIXEL, SLICE = 0.7, 1.5
ANGLE = math.radians(30)
ROW = np.array([math.cos(ANGLE), math.sin(ANGLE), 0.0])
COLUMN = np.array([-math.sin(ANGLE), math.cos(ANGLE), 0.0])
NORMAL = np.cross(ROW, COLUMN)
CENTRE = np.array([10.0, -20.0, 30.0])
ORIGIN = CENTRE - (SIZE - 1) / 2 * PIXEL * (ROW + COLUMN) - (SLICES - 1) / 2 * SLICE * NORMAL
SPHERE, RADIUS = CENTRE + np.array([3.0, -2.0, 4.0]), 9.0
LINE_POINT = CENTRE + np.array([-12.0, 10.0, 0.0])
LINE_DIRECTION = np.array([1.0, 0.3, 0.6]) / np.linalg.norm([1.0, 0.3, 0.6])
LINE_RADIUS, LINE_HALF_LENGTH = 2.0, 14.0
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def phantom_value(points: np.ndarray) -> np.ndarray:
    """Modality value at patient points (..., 3)."""
    values = np.zeros(points.shape[:-1], dtype=np.float32)
    offset = points - LINE_POINT
    along = offset @ LINE_DIRECTION
    across = np.linalg.norm(offset - along[..., None] * LINE_DIRECTION, axis=-1)
    values[(across <= LINE_RADIUS) & (np.abs(along) <= LINE_HALF_LENGTH)] = 500
    values[np.linalg.norm(points - SPHERE, axis=-1) <= RADIUS] = 1000
    return values


def slice_dataset(index: int, *, size: int = SIZE) -> tuple[Dataset, bytes]:
    position = ORIGIN + index * SLICE * NORMAL
    ds = Dataset()
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
    ds.ImagePositionPatient = [f"{value:.6f}" for value in position]
    ds.ImageOrientationPatient = [f"{value:.8f}" for value in (*ROW, *COLUMN)]
    ds.PixelSpacing = [str(PIXEL), str(PIXEL)]
    grid = np.arange(size) * PIXEL
    points = (
        position
        + grid[None, :, None] * ROW[None, None, :]
        + grid[:, None, None] * COLUMN[None, None, :]
    )
    stored = (phantom_value(points) + 1024).astype("<i2")
    return ds, stored.tobytes()


def decoded(ds: Dataset, frame: bytes) -> tuple[Dataset, np.ndarray]:
    return ds, apply_modality_lut(decode_frame(ds, frame, EXPLICIT_LE), ds)


@pytest.fixture(scope="module")
def slices() -> list[tuple[Dataset, np.ndarray]]:
    pairs = [decoded(*slice_dataset(index)) for index in range(SLICES)]
    order = [7, 3, 0, 39, 1, 2] + [i for i in range(SLICES) if i not in (7, 3, 0, 39, 1, 2)]
    return [pairs[index] for index in order]  # shuffled: build_volume must sort


@pytest.fixture(scope="module")
def volume(slices: list[tuple[Dataset, np.ndarray]]) -> Volume:
    return build_volume(slices)


def pixel_of(plane: Plane, point: np.ndarray) -> tuple[float, float]:
    orientation = np.array(plane.image_orientation_patient)
    offset = point - np.array(plane.image_position_patient)
    return (
        float(offset @ orientation[3:]) / plane.pixel_spacing[0],
        float(offset @ orientation[:3]) / plane.pixel_spacing[1],
    )


def test_volume_geometry(volume: Volume) -> None:
    assert volume.shape == (SLICES, SIZE, SIZE)
    assert np.allclose(volume.origin, ORIGIN, atol=1e-5)
    assert volume.slice_spacing == pytest.approx(SLICE)
    assert volume.voxels.dtype == np.float32
    assert volume.voxels.max() == 1000 and volume.voxels.min() == 0


def assert_disk(plane: Plane) -> None:
    """The sphere cut through its centre: a disk of its radius around it."""
    mask = plane.pixels > 500
    area = mask.sum() * plane.pixel_spacing[0] * plane.pixel_spacing[1]
    assert math.sqrt(area / math.pi) == pytest.approx(RADIUS, abs=0.3)
    rows, columns = np.nonzero(mask)
    centre = plane.patient_point(float(rows.mean()), float(columns.mean()))
    assert np.linalg.norm(centre - SPHERE) < 0.3
    row, column = pixel_of(plane, SPHERE)
    assert plane.pixels[round(row), round(column)] == pytest.approx(1000, abs=1)
    normal = np.cross(plane.image_orientation_patient[:3], plane.image_orientation_patient[3:])
    position = np.array(plane.image_position_patient)
    assert abs(float((position - SPHERE) @ normal)) < 1e-6


@pytest.mark.parametrize(
    "normal",
    ["axial", "coronal", "sagittal", (1.0, 1.0, 1.0), (0.2, -0.5, 0.8)],
    ids=["axial", "coronal", "sagittal", "oblique-111", "oblique"],
)
def test_sphere_is_a_disk_in_every_plane(volume: Volume, normal: str | tuple[float, ...]) -> None:
    plane = mpr(volume, normal=normal, point=SPHERE)
    assert plane.pixels.dtype == np.float32
    assert_disk(plane)


def test_named_plane_orientations(volume: Volume) -> None:
    axial = mpr(volume, normal="axial", point=SPHERE)
    assert np.allclose(axial.image_orientation_patient, (*ROW, *COLUMN))  # the slice grid
    assert axial.pixel_spacing == (PIXEL, PIXEL) and (axial.rows, axial.columns) == (SIZE, SIZE)
    coronal = mpr(volume, normal="coronal", point=SPHERE)
    assert np.allclose(coronal.image_orientation_patient, (1, 0, 0, 0, 0, -1))
    sagittal = mpr(volume, normal="sagittal", point=SPHERE)
    assert np.allclose(sagittal.image_orientation_patient, (0, 1, 0, 0, 0, -1))
    assert sagittal.pixel_spacing == (PIXEL, PIXEL)
    strings = sagittal.dicom_strings()
    assert strings["ImageOrientationPatient"] == "0\\1\\0\\0\\0\\-1"
    assert strings["PixelSpacing"] == "0.7\\0.7"
    assert all(len(value) <= 16 for value in strings["ImagePositionPatient"].split("\\"))


def test_axial_plane_is_the_slice_array(volume: Volume) -> None:
    point = ORIGIN + 12 * SLICE * NORMAL
    plane = mpr(volume, normal=(0, 0, -1), point=point)
    assert np.array_equal(plane.pixels, volume.voxels[12])
    assert np.allclose(plane.image_position_patient, point, atol=1e-6)
    between = mpr(volume, normal="axial", point=point + 0.25 * SLICE * NORMAL)
    expected = 0.75 * volume.voxels[12] + 0.25 * volume.voxels[13]
    assert np.allclose(between.pixels, expected, atol=1e-3)


def test_spacing_parameter_resamples(volume: Volume) -> None:
    plane = mpr(volume, normal="axial", point=SPHERE, spacing=0.5)
    assert plane.pixel_spacing == (0.5, 0.5)
    assert plane.rows == math.floor((SIZE - 1) * PIXEL / 0.5) + 1
    assert_disk(plane)


def test_fast_paths_match_trilinear_on_an_unrotated_volume() -> None:
    volume = build_volume(
        [
            (slice_ds, arr)
            for slice_ds, arr in (
                decoded(*unrotated(slice_dataset(index, size=24))) for index in range(10)
            )
        ]
    )
    rng = np.random.default_rng(5)
    volume.voxels[...] = rng.normal(size=volume.voxels.shape).astype(np.float32)
    for normal in ("axial", "coronal", "sagittal"):
        point = volume.origin + np.array([3.3, 5.1, 4.4])
        plane = mpr(volume, normal=normal, point=point, spacing=0.6)
        rows, columns = np.mgrid[0 : plane.rows, 0 : plane.columns]
        orientation = np.array(plane.image_orientation_patient)
        points = (
            np.array(plane.image_position_patient)
            + columns[..., None] * 0.6 * orientation[:3]
            + rows[..., None] * 0.6 * orientation[3:]
        )
        coords = np.moveaxis((points - volume.origin) @ volume.patient_to_index.T, -1, 0)
        expected = trilinear(volume.voxels, coords, volume.pad_value)
        assert np.allclose(plane.pixels, expected, atol=1e-4), normal


def unrotated(pair: tuple[Dataset, bytes]) -> tuple[Dataset, bytes]:
    ds, frame = pair
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    return ds, frame


def line_points(volume: Volume) -> np.ndarray:
    """Points on the line axis at least 2.5 mm inside the volume."""
    points = (
        LINE_POINT
        + np.linspace(-LINE_HALF_LENGTH + 2, LINE_HALF_LENGTH - 2, 30)[:, None]
        * (LINE_DIRECTION[None, :])
    )
    index = (points - volume.origin) @ volume.patient_to_index.T
    limits = np.array(volume.shape) - 1
    margin = 2.5 / np.array([SLICE, PIXEL, PIXEL])
    keep = np.all((index > margin) & (index < limits - margin), axis=1)
    assert keep.sum() > 15
    return np.asarray(points[keep])


@pytest.mark.parametrize(
    "normal",
    ["axial", tuple(np.cross(LINE_DIRECTION, (0.3, -0.4, 0.5)))],
    ids=["axial-array", "oblique-march"],
)
def test_mip_shows_the_line_at_its_intensity_along_its_path(
    volume: Volume, normal: str | tuple[float, ...]
) -> None:
    projection = mip(volume, normal=normal)
    spread = []
    for point in line_points(volume):
        row, column = pixel_of(projection, point)
        value = projection.pixels[round(row), round(column)]
        if np.linalg.norm(np.cross(point - SPHERE, projection_normal(projection))) > RADIUS + 3:
            spread.append(value)
    assert len(spread) > 10
    assert np.allclose(spread, 500, atol=6)


def projection_normal(plane: Plane) -> np.ndarray:
    return np.cross(plane.image_orientation_patient[:3], plane.image_orientation_patient[3:])


def test_mip_along_the_line_and_slab_modes(volume: Volume) -> None:
    centre = LINE_POINT
    along = mip(volume, normal=tuple(LINE_DIRECTION), point=centre, thickness=10, mode="avg")
    row, column = pixel_of(along, centre)
    assert along.pixels[round(row), round(column)] == pytest.approx(500, abs=6)
    minimum = mip(volume, normal=tuple(LINE_DIRECTION), point=centre, thickness=10, mode="min")
    assert minimum.pixels[round(row), round(column)] == pytest.approx(500, abs=6)
    # A 6 mm axial slab far from the sphere misses it; through its centre it holds it.
    far = mip(volume, normal="axial", point=SPHERE + 15 * NORMAL, thickness=6)
    assert far.pixels.max() < 1000
    near = mip(volume, normal="axial", point=SPHERE, thickness=6)
    assert near.pixels.max() == 1000
    assert np.allclose(near.image_position_patient @ NORMAL, SPHERE @ NORMAL)


def test_plane_parameters_are_checked(volume: Volume) -> None:
    with pytest.raises(BadRenderParameter):
        mpr(volume, normal=(0, 0, 0))
    with pytest.raises(BadRenderParameter):
        mpr(volume, normal="oblique")
    with pytest.raises(BadRenderParameter):
        mpr(volume, normal="axial", point=CENTRE + 500 * NORMAL)
    with pytest.raises(BadRenderParameter):
        mpr(volume, normal="axial", spacing=0)
    with pytest.raises(BadRenderParameter):
        mip(volume, normal="axial", thickness=-1)
    with pytest.raises(BadRenderParameter):
        mip(volume, normal="axial", mode="median")  # type: ignore[arg-type]


def test_refuses_what_is_not_a_volume(slices: list[tuple[Dataset, np.ndarray]]) -> None:
    def refused(pairs: list[tuple[Dataset, np.ndarray]], reason: str) -> None:
        with pytest.raises(VolumeError, match=reason):
            build_volume(pairs)

    refused(slices[:1], "at least 2")
    refused([slices[0], slices[3], *slices[5:]], "non-uniform")
    tilted = copy.deepcopy(slices[4][0])
    tilted.ImageOrientationPatient = ["1", "0", "0", "0", "0.9", "0.43588989"]
    refused([*slices[:4], (tilted, slices[4][1]), *slices[5:]], "not parallel")
    refused([*slices[:4], (slices[4][0], slices[4][1][:32]), *slices[5:]], "mixed slice sizes")
    refused([*slices, slices[9]], "share one position")
    bad = copy.deepcopy(slices[4][0])
    del bad.ImagePositionPatient
    refused([*slices[:4], (bad, slices[4][1]), *slices[5:]], "ImagePositionPatient")
    skewed = [(copy.deepcopy(ds), arr) for ds, arr in slices]
    for ds, _ in skewed:
        ds.ImageOrientationPatient = ["1", "0", "0", "0.5", "0.8660254", "0"]
    refused(skewed, "orthogonal")
    shifted = copy.deepcopy(slices[10][0])
    position = [float(value) for value in shifted.ImagePositionPatient]
    shifted.ImagePositionPatient = [position[0] + 3, position[1], position[2]]
    refused([*slices[:10], (shifted, slices[10][1]), *slices[11:]], "one line")
