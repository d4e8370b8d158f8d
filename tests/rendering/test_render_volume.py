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
    PLANE_NORMALS,
    BadRenderParameter,
    Plane,
    Volume,
    VolumeError,
    apply_modality_lut,
    build_volume,
    decode_frame,
    mip,
    mpr,
    volume_from_frames,
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


def frames_of(pairs: list[tuple[Dataset, bytes]]) -> list[tuple[Dataset, bytes, str]]:
    return [(ds, frame, EXPLICIT_LE) for ds, frame in pairs]


@pytest.fixture(scope="module")
def stored_volume() -> Volume:
    """The phantom as the HTTP routes load it: stored integers, rescaled when sampled."""
    return volume_from_frames(
        frames_of([slice_dataset(index) for index in range(SLICES)]), column_copy=True
    )


PLANES = ["axial", "coronal", "sagittal", (1.0, 1.0, 1.0), (0.2, -0.5, 0.8)]


def test_stored_volume_keeps_integers_and_counts_its_column_copy(stored_volume: Volume) -> None:
    assert stored_volume.voxels.dtype == np.int16
    assert (stored_volume.rescale_slope, stored_volume.rescale_intercept) == (1.0, -1024.0)
    assert stored_volume.pad_value == 0.0
    assert stored_volume.nbytes == 2 * stored_volume.voxels.nbytes


@pytest.mark.parametrize("normal", PLANES)
def test_stored_volume_gives_the_modality_planes(
    volume: Volume, stored_volume: Volume, normal: str | tuple[float, ...]
) -> None:
    for point in (SPHERE, None, SPHERE + np.array([0.31, -0.17, 0.53])):
        expected = mpr(volume, normal=normal, point=point)
        plane = mpr(stored_volume, normal=normal, point=point)
        assert plane.pixels.dtype == np.float32
        assert plane.dicom_strings() == expected.dicom_strings()
        assert np.allclose(plane.pixels, expected.pixels, atol=1e-3)
        projection = mip(stored_volume, normal=normal, point=point, thickness=6, mode="avg")
        reference = mip(volume, normal=normal, point=point, thickness=6, mode="avg")
        assert np.allclose(projection.pixels, reference.pixels, atol=1e-3)


def test_column_copy_changes_nothing_but_the_layout() -> None:
    pairs = [unrotated(slice_dataset(index)) for index in range(SLICES)]
    volume = volume_from_frames(frames_of(pairs), column_copy=True)
    point = SPHERE + np.array([0.2, 0.45, -0.3])
    before = [mpr(volume, normal="sagittal", point=point), mip(volume, normal="sagittal")]
    assert volume.by_column is None
    volume.build_column_copy()
    assert volume.by_column is not None
    assert np.array_equal(volume.by_column, volume.voxels.transpose(2, 0, 1))
    after = [mpr(volume, normal="sagittal", point=point), mip(volume, normal="sagittal")]
    for plane, again in zip(before, after, strict=True):
        assert np.array_equal(plane.pixels, again.pixels)
    without = volume_from_frames(frames_of(pairs))
    without.build_column_copy()
    assert without.by_column is None and without.nbytes == without.voxels.nbytes


def test_negative_slope_projects_modality_values() -> None:
    """MIP max of modality values is the minimum of the stored values when the slope is < 0."""
    pairs = []
    for index in range(SLICES):
        ds, frame = slice_dataset(index)
        ds.RescaleSlope, ds.RescaleIntercept = "-2", "100"
        pairs.append((ds, frame))
    stored = volume_from_frames(frames_of(pairs))
    modality = build_volume([decoded(ds, frame) for ds, frame in pairs])
    assert stored.voxels.dtype == np.int16 and modality.voxels.dtype == np.float32
    assert stored.pad_value == modality.pad_value
    for mode in ("max", "min", "avg"):
        for normal in ("axial", "coronal", (0.2, -0.5, 0.8)):
            expected = mip(modality, normal=normal, thickness=10, mode=mode)  # type: ignore[arg-type]
            plane = mip(stored, normal=normal, thickness=10, mode=mode)  # type: ignore[arg-type]
            assert np.allclose(plane.pixels, expected.pixels, atol=1e-2), (mode, normal)


def test_per_slice_rescale_falls_back_to_modality_values() -> None:
    pairs = []
    for index in range(SLICES):
        ds, frame = slice_dataset(index)
        ds.RescaleSlope = "1" if index % 2 else "0.5"
        pairs.append((ds, frame))
    volume = volume_from_frames(frames_of(pairs))
    assert volume.voxels.dtype == np.float32 and volume.rescale_slope == 1.0
    expected = build_volume([decoded(ds, frame) for ds, frame in pairs])
    assert np.array_equal(volume.voxels, expected.voxels)


def test_planes_along_volume_axes_are_voxels_not_blends() -> None:
    """A plane whose rows run along a volume axis at its spacing has its pixels on the
    voxel centres along it (read, not blended by half a voxel), wherever its point."""
    pairs = [unrotated(slice_dataset(index)) for index in range(SLICES)]
    volume = volume_from_frames(frames_of(pairs))
    point = volume.origin + np.array([10.33, 7.21, 5.1])
    for normal, along in (("coronal", volume.row_cosines), ("sagittal", volume.column_cosines)):
        plane = mpr(volume, normal=normal, point=point)
        assert plane.columns == SIZE
        first = (np.array(plane.image_position_patient) - volume.origin) @ along / PIXEL
        assert first == pytest.approx(0.0, abs=1e-6)
        normal_vector = np.array(PLANE_NORMALS[normal])
        assert float((np.array(plane.image_position_patient) - point) @ normal_vector) == (
            pytest.approx(0.0, abs=1e-6)
        )
