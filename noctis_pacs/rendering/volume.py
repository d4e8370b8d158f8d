"""Assemble a series of parallel slices into a volume for MPR and MIP.

Beyond the standard: the geometry comes from the Image Plane module
(PS3.3 C.7.6.2): Image Position (Patient) is the centre of the first
transmitted pixel, Image Orientation (Patient) the row then column direction
cosines, Pixel Spacing the row spacing (between adjacent rows) then the
column spacing. Slices are ordered by projecting their position on the
normal of the orientation (row x column cosines), as Orthanc does.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from noctis_pacs.rendering.decode import decode_frame
from noctis_pacs.rendering.errors import NotRenderable, VolumeError
from noctis_pacs.rendering.lut import apply_modality_lut, linear_rescale
from noctis_pacs.rendering.pixels import describe_pixels

#: Largest difference between direction cosines still called parallel.
ORIENTATION_TOLERANCE = 1e-4
#: Slice gaps may differ from their median by this fraction (or 0.01 mm).
SPACING_TOLERANCE = 0.02


class _ColumnCopy:
    """The optional [column, slice, row] copy of a volume's voxels, built at most once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.array: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Volume:
    """A voxel array [slice, row, column] placed in patient space.

    ``origin`` is the centre of voxel (0, 0, 0) in mm. Voxel (k, r, c) lies
    at ``origin + c * column_spacing * row_cosines + r * row_spacing *
    column_cosines + k * slice_step`` (``slice_step`` is not perpendicular to
    the slices when the gantry was tilted).

    ``voxels`` hold either modality values (float32) or, when every slice
    shares one linear Modality LUT, the stored integers: the modality value
    of a sample is then ``sample * rescale_slope + rescale_intercept``
    (PS3.3 C.11.1), applied by :meth:`modality` once a plane is sampled.
    Stored integers take half the memory of float32 (a 512x512x256 CT:
    128 MiB) and half the memory traffic of every plane.

    With ``column_copy`` the volume may also hold the voxels a second time in
    [column, slice, row] order, so that planes of constant column (sagittal
    for an axial series) are contiguous too; :meth:`build_column_copy`
    makes it, and :attr:`nbytes` counts it from the start.
    """

    voxels: np.ndarray
    origin: np.ndarray
    row_cosines: np.ndarray
    column_cosines: np.ndarray
    slice_step: np.ndarray
    row_spacing: float
    column_spacing: float
    header: Dataset
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    column_copy: bool = False
    _columns: _ColumnCopy = field(default_factory=_ColumnCopy, init=False, repr=False)

    @property
    def normal(self) -> np.ndarray:
        """Unit normal of the slices (row x column cosines)."""
        return np.cross(self.row_cosines, self.column_cosines)

    @property
    def slice_spacing(self) -> float:
        """Distance in mm between adjacent slice planes."""
        return float(abs(np.dot(self.slice_step, self.normal)))

    @property
    def shape(self) -> tuple[int, int, int]:
        """(slices, rows, columns)."""
        slices, rows, columns = self.voxels.shape
        return int(slices), int(rows), int(columns)

    @property
    def nbytes(self) -> int:
        """Bytes the volume holds at most: the voxels, twice with ``column_copy``."""
        return int(self.voxels.nbytes) * (2 if self.column_copy else 1)

    @cached_property
    def index_to_patient(self) -> np.ndarray:
        """3x3 matrix mapping (k, r, c) index offsets to patient offsets in mm."""
        matrix = np.column_stack(
            (
                self.slice_step,
                self.column_cosines * self.row_spacing,
                self.row_cosines * self.column_spacing,
            )
        )
        matrix.flags.writeable = False
        return matrix

    @cached_property
    def patient_to_index(self) -> np.ndarray:
        """Inverse of :attr:`index_to_patient`."""
        inverse = np.asarray(np.linalg.inv(self.index_to_patient))
        inverse.flags.writeable = False
        return inverse

    @cached_property
    def centre(self) -> np.ndarray:
        """Patient coordinates of the centre of the volume."""
        middle = (np.array(self.shape, dtype=np.float64) - 1) / 2
        centre = np.asarray(self.origin + self.index_to_patient @ middle)
        centre.flags.writeable = False
        return centre

    @cached_property
    def axis_normals(self) -> np.ndarray:
        """Row ``axis``: unit normal of the planes of constant index along that array axis."""
        steps = self.index_to_patient.T
        normals = np.array(
            [np.cross(steps[(axis + 1) % 3], steps[(axis + 2) % 3]) for axis in range(3)]
        )
        normals /= np.linalg.norm(normals, axis=1)[:, None]
        normals.flags.writeable = False
        return normals

    @cached_property
    def raw_pad(self) -> float:
        """The voxel value whose modality value is the smallest (computed once)."""
        if self.rescale_slope < 0:
            return float(self.voxels.max())
        return float(self.voxels.min())

    @cached_property
    def pad_value(self) -> float:
        """Modality value of samples outside the volume: its minimum."""
        return float(self.modality(np.array([self.raw_pad], dtype=np.float32))[0])

    def modality(self, samples: np.ndarray, *, in_place: bool = False) -> np.ndarray:
        """Modality values (float32) of voxel samples: the rescale, when there is one.

        ``in_place``: ``samples`` is a scratch array that may be overwritten."""
        slope, intercept = self.rescale_slope, self.rescale_intercept
        if slope == 1.0 and intercept == 0.0:
            return samples if samples.dtype == np.float32 else samples.astype(np.float32)
        if in_place and samples.dtype == np.float32:
            if slope != 1.0:
                samples *= np.float32(slope)
            if intercept != 0.0:
                samples += np.float32(intercept)
            return samples
        if slope == 1.0:
            return np.asarray(np.add(samples, np.float32(intercept), dtype=np.float32))
        values: np.ndarray = np.multiply(samples, np.float32(slope), dtype=np.float32)
        if intercept != 0.0:
            values += np.float32(intercept)
        return values

    @property
    def by_column(self) -> np.ndarray | None:
        """The [column, slice, row] copy of the voxels, once built."""
        return self._columns.array

    def planes_along(self, axis: int) -> tuple[np.ndarray, int]:
        """(array, axis) whose index ``i`` along that axis is ``voxels`` index ``i`` along
        ``axis``: the column copy for ``axis`` 2 once built (a contiguous read)."""
        copy = self._columns.array
        if axis == 2 and copy is not None:
            return copy, 0
        return self.voxels, axis

    def build_column_copy(self) -> None:
        """Build the [column, slice, row] copy (only with ``column_copy``; once).

        Returns at once when it exists or another thread is building it. Copied
        slice by slice (each a 2D transpose that stays in the CPU caches).
        """
        holder = self._columns
        if not self.column_copy or holder.array is not None:
            return
        if not holder.lock.acquire(blocking=False):
            return
        try:
            if holder.array is not None:
                return
            slices, rows, columns = self.shape
            copy = _allocate((columns, slices, rows), self.voxels.dtype)
            for index in range(slices):
                copy[:, index, :] = self.voxels[index].T
            copy.flags.writeable = False
            holder.array = copy
        finally:
            holder.lock.release()

    @cached_property
    def _corners(self) -> np.ndarray:
        slices, rows, columns = self.shape
        index = np.array(
            [[k, r, c] for k in (0, slices - 1) for r in (0, rows - 1) for c in (0, columns - 1)],
            dtype=np.float64,
        )
        corners = np.asarray(self.origin + index @ self.index_to_patient.T)
        corners.flags.writeable = False
        return corners

    def corners(self) -> np.ndarray:
        """Patient coordinates (8 x 3) of the centres of the corner voxels."""
        return self._corners


def _numbers(ds: Dataset, keyword: str, count: int) -> np.ndarray:
    value: Any = ds.get(keyword, None)
    try:
        numbers = np.array([float(item) for item in value], dtype=np.float64)
    except (TypeError, ValueError):
        raise VolumeError(f"a slice has no valid {keyword}") from None
    if numbers.shape != (count,) or not np.all(np.isfinite(numbers)):
        raise VolumeError(f"a slice has no valid {keyword}")
    return numbers


@dataclass(frozen=True)
class _Plan:
    """The checked geometry of a series: slice order and the volume's axes."""

    order: np.ndarray
    origin: np.ndarray
    row_cosines: np.ndarray
    column_cosines: np.ndarray
    step: np.ndarray
    pixel_spacing: np.ndarray
    shape: tuple[int, int]


def _plan(
    headers: Sequence[Dataset], shapes: Sequence[tuple[int, ...]], spacing_tolerance: float
) -> _Plan:
    """Check the slices' geometry and order them (PS3.3 C.7.6.2.1.1: by Image Position
    (Patient) projected on the normal of Image Orientation (Patient))."""
    if len(headers) < 2:
        raise VolumeError("a volume needs at least 2 slices")
    first_ds, first_shape = headers[0], shapes[0]
    if len(first_shape) != 2:
        raise VolumeError("slices must be 2D (one frame of grayscale values)")
    orientation = _numbers(first_ds, "ImageOrientationPatient", 6)
    pixel_spacing = _numbers(first_ds, "PixelSpacing", 2)
    row_cosines, column_cosines = orientation[:3], orientation[3:]
    if (
        abs(np.linalg.norm(row_cosines) - 1) > 1e-3
        or abs(np.linalg.norm(column_cosines) - 1) > 1e-3
        or abs(np.dot(row_cosines, column_cosines)) > 1e-3
    ):
        raise VolumeError("Image Orientation (Patient) is not two orthogonal unit vectors")
    if np.any(pixel_spacing <= 0):
        raise VolumeError("Pixel Spacing must be positive")
    row_cosines = row_cosines / np.linalg.norm(row_cosines)
    column_cosines = column_cosines / np.linalg.norm(column_cosines)
    normal = np.cross(row_cosines, column_cosines)
    positions = []
    for ds, shape in zip(headers, shapes, strict=True):
        if tuple(shape) != tuple(first_shape):
            raise VolumeError(f"mixed slice sizes: {tuple(shape)} and {tuple(first_shape)}")
        if np.max(np.abs(_numbers(ds, "ImageOrientationPatient", 6) - orientation)) > (
            ORIENTATION_TOLERANCE
        ):
            raise VolumeError("slices are not parallel (Image Orientation differs)")
        if np.max(np.abs(_numbers(ds, "PixelSpacing", 2) - pixel_spacing)) > 1e-4:
            raise VolumeError("slices have different Pixel Spacing")
        positions.append(_numbers(ds, "ImagePositionPatient", 3))
    points = np.array(positions)
    distances = points @ normal
    order = np.argsort(distances, kind="stable")
    gaps = np.diff(distances[order])
    if np.min(gaps) < 1e-3:
        raise VolumeError("two slices share one position")
    median = float(np.median(gaps))
    if np.max(np.abs(gaps - median)) > max(0.01, spacing_tolerance * median):
        raise VolumeError(
            f"non-uniform slice spacing ({gaps.min():.3f}..{gaps.max():.3f} mm): "
            "missing or overlapping slices"
        )
    ordered = points[order]
    step = (ordered[-1] - ordered[0]) / (len(ordered) - 1)
    expected = ordered[0] + np.arange(len(ordered))[:, None] * step
    if np.max(np.linalg.norm(ordered - expected, axis=1)) > max(0.05, spacing_tolerance * median):
        raise VolumeError("slice positions are not on one line")
    return _Plan(
        order,
        ordered[0],
        row_cosines,
        column_cosines,
        step,
        pixel_spacing,
        (int(first_shape[0]), int(first_shape[1])),
    )


def _allocate(shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    """Zeroed memory for voxels, in 4 KiB pages (an anonymous mapping of its own).

    numpy asks for transparent huge pages on arrays this large, and on a virtual
    machine the first touch of fresh huge pages is several times dearer (the
    hypervisor backs them anew) than that of 4 KiB pages recycled from memory the
    process has just freed; with 4 KiB pages the first build of a process costs as
    much as the next ones (figures: docs/performance.md, "Measurements behind the
    code").
    """
    size = int(np.prod(shape)) * dtype.itemsize
    anonymous = getattr(mmap, "MAP_ANONYMOUS", None)
    if size == 0 or anonymous is None:
        return np.zeros(shape, dtype=dtype)
    buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | anonymous)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        buffer.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)


def _volume(
    plan: _Plan,
    voxels: np.ndarray,
    header: Dataset,
    *,
    rescale: tuple[float, float] = (1.0, 0.0),
    column_copy: bool = False,
) -> Volume:
    return Volume(
        voxels=voxels,
        origin=plan.origin,
        row_cosines=plan.row_cosines,
        column_cosines=plan.column_cosines,
        slice_step=plan.step,
        row_spacing=float(plan.pixel_spacing[0]),
        column_spacing=float(plan.pixel_spacing[1]),
        header=header,
        rescale_slope=rescale[0],
        rescale_intercept=rescale[1],
        column_copy=column_copy,
    )


def build_volume(
    slices: Sequence[tuple[Dataset, np.ndarray]],
    *,
    spacing_tolerance: float = SPACING_TOLERANCE,
) -> Volume:
    """Build a :class:`Volume` from (header, modality-value 2D array) pairs.

    Refuses with :class:`VolumeError`: fewer than 2 slices, missing geometry,
    mixed sizes or pixel spacings, non-parallel or non-orthogonal
    orientations, duplicate positions, non-uniform spacing (gaps) and
    positions that are not on one line.
    """
    plan = _plan([ds for ds, _ in slices], [arr.shape for _, arr in slices], spacing_tolerance)
    voxels = _allocate((len(slices), *plan.shape), np.dtype(np.float32))
    for target, index in enumerate(plan.order):
        voxels[target] = slices[int(index)][1]
    return _volume(plan, voxels, slices[int(plan.order[0])][0])


def _stored_dtype(headers: Sequence[Dataset]) -> np.dtype[Any] | None:
    """The integer type of the stored values when every slice shares one linear
    Modality LUT (Rescale Slope / Intercept, PS3.3 C.11.1); else None (float32)."""
    first = linear_rescale(headers[0])
    if first is None or first[0] == 0.0:
        return None
    try:
        desc = describe_pixels(headers[0])
    except NotRenderable:
        return None
    if desc.samples_per_pixel != 1 or desc.bits_allocated not in (8, 16):
        return None
    for ds in headers:
        if linear_rescale(ds) != first:
            return None
    kind = "i" if desc.pixel_representation == 1 else "u"
    return np.dtype(f"{kind}{desc.bits_allocated // 8}")


class _NotStoredType(Exception):
    """A decoded frame does not fit the stored type announced by its header."""


def _fill(
    plan: _Plan, slices: Sequence[tuple[Dataset, bytes, str]], dtype: np.dtype[Any] | None
) -> np.ndarray:
    """Decode each frame into its place: stored values of ``dtype``, or modality values
    (float32) when ``dtype`` is None. Raises :class:`_NotStoredType` when a frame does
    not fit ``dtype``."""
    voxels = _allocate((len(slices), *plan.shape), dtype or np.dtype(np.float32))
    for target, index in enumerate(plan.order):
        ds, frame, transfer_syntax = slices[int(index)]
        stored = decode_frame(ds, frame, transfer_syntax)
        if stored.ndim != 2:
            raise VolumeError("MPR and MIP need grayscale images")
        if stored.shape != plan.shape:
            raise VolumeError(f"a frame of {stored.shape} does not match Rows x Columns")
        if dtype is None:
            voxels[target] = apply_modality_lut(stored, ds)
        elif np.can_cast(stored.dtype, dtype, casting="safe"):
            voxels[target] = stored
        else:
            raise _NotStoredType
    return voxels


def volume_from_frames(
    items: Iterable[tuple[Dataset, bytes, str]], *, column_copy: bool = False
) -> Volume:
    """Build a volume from (header, first-frame bytes, transfer syntax) of each slice.

    The one loader behind the HTTP MPR/MIP routes and ``noctis-pacs render``. The
    geometry is checked from the headers first; each frame is then decoded straight
    into its place in the volume (one array, no second copy): the stored integers
    when every slice shares one Rescale Slope / Intercept, else modality values as
    float32. ``column_copy`` lets the volume build a second layout later
    (:meth:`Volume.build_column_copy`, counted in :attr:`Volume.nbytes`).
    """
    slices = list(items)
    headers = [ds for ds, _, _ in slices]
    shapes = [(int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)) for ds in headers]
    plan = _plan(headers, shapes, SPACING_TOLERANCE)
    header = headers[int(plan.order[0])]
    dtype = _stored_dtype(headers)
    rescale = linear_rescale(header) if dtype is not None else None
    if dtype is not None and rescale is not None:
        try:
            voxels = _fill(plan, slices, dtype)
        except _NotStoredType:
            pass
        else:
            return _volume(plan, voxels, header, rescale=rescale, column_copy=column_copy)
    voxels = _fill(plan, slices, None)
    return _volume(plan, voxels, header, column_copy=column_copy)
