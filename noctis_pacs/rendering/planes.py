"""Multi-planar reformatting (MPR) and intensity projections (MIP/MinIP/AvgIP).

Beyond the standard. A plane is given in patient coordinates (mm, PS3.3
C.7.6.2.1.1) by its normal and a point on it; the result carries the
geometry of an Image Plane module so a viewer can place it in 3D.

Planes parallel to one of the volume's array axes are cut from the array
(the acquired slices directly; others from one row or column of every slice,
then resampled in 2D); only oblique planes need trilinear interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from noctis_pacs.rendering.errors import BadRenderParameter
from noctis_pacs.rendering.volume import Volume

Vector = Sequence[float]
MipMode = Literal["max", "min", "avg"]
MIP_MODES: tuple[MipMode, ...] = ("max", "min", "avg")
#: Normals of the named planes in patient coordinates (LPS, PS3.3 C.7.6.2.1.1).
PLANE_NORMALS: dict[str, tuple[float, float, float]] = {
    "axial": (0.0, 0.0, 1.0),
    "coronal": (0.0, 1.0, 0.0),
    "sagittal": (1.0, 0.0, 0.0),
}
_ALIGNED = 1 - 1e-6
_EPS = 1e-4


def _read_only(values: Sequence[float]) -> np.ndarray:
    array = np.array(values, dtype=np.float64)
    array.flags.writeable = False
    return array


_UNIT_NORMALS = {name: _read_only(vector) for name, vector in PLANE_NORMALS.items()}


def _ds(value: float) -> str:
    """One DICOM Decimal String (PS3.5 6.2, at most 16 characters)."""
    rounded = 0.0 if abs(value) < 1e-9 else value
    return f"{rounded:.10g}"


@dataclass(frozen=True, eq=False)
class Plane:
    """A reformatted or projected image with Image Plane module geometry.

    ``pixels`` holds modality values (float32, rows x columns);
    ``image_position_patient`` is the centre of the first transmitted pixel,
    ``image_orientation_patient`` the row then column direction cosines,
    ``pixel_spacing`` the row spacing then the column spacing (PS3.3 C.7.6.2).
    """

    pixels: np.ndarray
    image_position_patient: tuple[float, float, float]
    image_orientation_patient: tuple[float, float, float, float, float, float]
    pixel_spacing: tuple[float, float]

    @property
    def rows(self) -> int:
        """Number of rows."""
        return int(self.pixels.shape[0])

    @property
    def columns(self) -> int:
        """Number of columns."""
        return int(self.pixels.shape[1])

    def patient_point(self, row: float, column: float) -> np.ndarray:
        """Patient coordinates of the (possibly fractional) pixel (row, column)."""
        orientation = np.array(self.image_orientation_patient)
        return np.asarray(
            np.array(self.image_position_patient)
            + column * self.pixel_spacing[1] * orientation[:3]
            + row * self.pixel_spacing[0] * orientation[3:]
        )

    def dicom_strings(self) -> dict[str, str]:
        """Geometry as DICOM string values, multi-values backslash-separated.

        Keys are the DICOM keywords ImagePositionPatient,
        ImageOrientationPatient, PixelSpacing, Rows and Columns.
        """
        return {
            "ImagePositionPatient": "\\".join(map(_ds, self.image_position_patient)),
            "ImageOrientationPatient": "\\".join(map(_ds, self.image_orientation_patient)),
            "PixelSpacing": "\\".join(map(_ds, self.pixel_spacing)),
            "Rows": str(self.rows),
            "Columns": str(self.columns),
        }


def resolve_normal(normal: Vector | str) -> np.ndarray:
    """Unit normal from a vector or a plane name (axial, coronal, sagittal)."""
    if isinstance(normal, str):
        try:
            return _UNIT_NORMALS[normal.strip().lower()]
        except KeyError:
            raise BadRenderParameter(
                f"unknown plane {normal!r}: use axial, coronal or sagittal"
            ) from None
    vector = np.asarray(normal, dtype=np.float64)
    length = float(np.linalg.norm(vector)) if vector.shape == (3,) else 0.0
    if not math.isfinite(length) or length < 1e-9:
        raise BadRenderParameter("normal must be three numbers, not all zero")
    return vector / length


def _point(volume: Volume, point: Vector | None) -> np.ndarray:
    if point is None:
        return volume.centre
    vector = np.asarray(point, dtype=np.float64)
    if vector.shape != (3,) or not np.all(np.isfinite(vector)):
        raise BadRenderParameter("point must be three finite numbers (x,y,z in mm)")
    return vector


def _display_axes(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column directions of a plane, oriented as radiologists read.

    Column direction: posterior (axial-like planes) or feet-ward (others),
    projected on the plane; row direction perpendicular to it, towards the
    patient's left, or posterior for sagittal-like planes. For the named
    planes this gives the usual orientations: axial 1\\0\\0\\0\\1\\0,
    coronal 1\\0\\0\\0\\0\\-1, sagittal 0\\1\\0\\0\\0\\-1.
    (Plain floats: numpy costs more than the arithmetic on three numbers.)
    """
    n = [float(value) for value in normal]
    magnitudes = [abs(value) for value in n]
    largest = magnitudes.index(max(magnitudes))
    reference = (0.0, 1.0, 0.0) if largest == 2 else (0.0, 0.0, -1.0)
    along = sum(r * m for r, m in zip(reference, n, strict=True))
    column = [r - along * m for r, m in zip(reference, n, strict=True)]
    length = math.sqrt(sum(value * value for value in column))
    column = [value / length for value in column]
    row = [
        column[1] * n[2] - column[2] * n[1],
        column[2] * n[0] - column[0] * n[2],
        column[0] * n[1] - column[1] * n[0],
    ]
    if row[1 if largest == 0 else 0] < 0:
        row = [-value for value in row]
    return np.array(row), np.array(column)


def _axis_vectors(volume: Volume) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patient-space step of one index along array axes 0 (slice), 1 (row), 2 (column)."""
    matrix = volume.index_to_patient
    return matrix[:, 0], matrix[:, 1], matrix[:, 2]


def _aligned_axis(volume: Volume, normal: np.ndarray) -> int | None:
    """Array axis whose constant-index planes are perpendicular to ``normal``."""
    alignment = np.abs(volume.axis_normals @ normal)
    axis = int(np.argmax(alignment))
    return axis if alignment[axis] > _ALIGNED else None


@dataclass(frozen=True)
class _Grid:
    """Pixel grid of a plane in patient space."""

    position: np.ndarray
    row_direction: np.ndarray
    column_direction: np.ndarray
    row_spacing: float
    column_spacing: float
    rows: int
    columns: int
    #: Voxel index (k, r, c) of the first pixel, and its change per column and per row.
    base: np.ndarray
    along_row: np.ndarray
    down_column: np.ndarray

    def index_coords(self) -> np.ndarray:
        """(3, rows, columns) fractional voxel indices (k, r, c) of each pixel."""
        base, along_row, down_column = self.base, self.along_row, self.down_column
        columns = np.arange(self.columns, dtype=np.float64)
        rows = np.arange(self.rows, dtype=np.float64)
        return np.asarray(
            base[:, None, None]
            + along_row[:, None, None] * columns[None, None, :]
            + down_column[:, None, None] * rows[None, :, None]
        )

    def plane(self, pixels: np.ndarray) -> Plane:
        x, y, z = (float(value) for value in self.position)
        rx, ry, rz = (float(value) for value in self.row_direction)
        cx, cy, cz = (float(value) for value in self.column_direction)
        # Read-only: a plane cut from the slice grid is a view of a cached volume.
        view = np.ascontiguousarray(pixels, dtype=np.float32).view()
        view.flags.writeable = False
        return Plane(
            pixels=view,
            image_position_patient=(x, y, z),
            image_orientation_patient=(rx, ry, rz, cx, cy, cz),
            pixel_spacing=(self.row_spacing, self.column_spacing),
        )


def _count(extent: float, spacing: float) -> int:
    return int(math.floor(extent / spacing + 1e-6)) + 1


def _grid(
    volume: Volume, normal: np.ndarray, point: np.ndarray, spacing: float | None, axis: int | None
) -> _Grid:
    """The plane's pixel grid: the slice grid when cut along the slice axis,
    otherwise display axes over the projection of the whole volume, with the
    given point on a pixel centre, moved by less than a pixel along an axis
    that runs along the voxels (:func:`_snap`)."""
    inverse = volume.patient_to_index
    if axis == 0:
        slice_index = float((inverse @ (point - volume.origin))[0])
        _, rows, columns = volume.shape
        row_spacing = spacing or volume.row_spacing
        column_spacing = spacing or volume.column_spacing
        return _Grid(
            position=volume.origin + slice_index * volume.slice_step,
            row_direction=volume.row_cosines,
            column_direction=volume.column_cosines,
            row_spacing=row_spacing,
            column_spacing=column_spacing,
            rows=_count((rows - 1) * volume.row_spacing, row_spacing),
            columns=_count((columns - 1) * volume.column_spacing, column_spacing),
            base=np.array([slice_index, 0.0, 0.0]),
            along_row=np.array([0.0, 0.0, column_spacing / volume.column_spacing]),
            down_column=np.array([0.0, row_spacing / volume.row_spacing, 0.0]),
        )
    step = spacing or min(volume.row_spacing, volume.column_spacing)
    row_direction, column_direction = _display_axes(normal)
    directions = np.column_stack((row_direction, column_direction))
    extents = (volume.corners() - point) @ directions
    (u_min, v_min), (u_max, v_max) = extents.min(axis=0).tolist(), extents.max(axis=0).tolist()
    u_first = math.floor(u_min / step + 1e-6) * step
    v_first = math.floor(v_min / step + 1e-6) * step
    along_row, down_column = (inverse @ (directions * step)).T
    start = inverse @ (point - volume.origin) + along_row * (u_first / step)
    start += down_column * (v_first / step)
    u_shift = _snap(start, along_row, (u_min - u_first) / step)
    v_shift = _snap(start, down_column, (v_min - v_first) / step)
    u_first += u_shift * step
    v_first += v_shift * step
    return _Grid(
        position=point + u_first * row_direction + v_first * column_direction,
        row_direction=row_direction,
        column_direction=column_direction,
        row_spacing=step,
        column_spacing=step,
        rows=_count(v_max - v_first, step),
        columns=_count(u_max - u_first, step),
        base=start + u_shift * along_row + v_shift * down_column,
        along_row=along_row,
        down_column=down_column,
    )


def _snap(start: np.ndarray, per_pixel: np.ndarray, slack: float) -> float:
    """Pixels (-1..1) to move a grid's first pixel along one of its axes so that the
    pixels are voxel centres, when one pixel along it is one voxel along one array
    axis; else 0. Forward only by at most ``slack`` pixels (keeping the volume covered).

    That axis of the plane is then read, not interpolated: no half-voxel blur, and
    no resampling cost."""
    steps = [float(value) for value in per_pixel]
    axis = max(range(3), key=lambda candidate: abs(steps[candidate]))
    if abs(abs(steps[axis]) - 1) > 1e-9 or any(
        abs(steps[other]) > 1e-9 for other in range(3) if other != axis
    ):
        return 0.0
    index = float(start[axis]) * math.copysign(1.0, steps[axis])
    forward = math.ceil(index - 1e-6) - index
    if forward <= slack + 1e-6:
        return forward
    return forward - 1


def _check_spacing(spacing: float | None) -> None:
    if spacing is not None and not (math.isfinite(spacing) and 0.01 <= spacing <= 100):
        raise BadRenderParameter("spacing must be within 0.01..100 mm")


def _check_intersects(volume: Volume, normal: np.ndarray, point: np.ndarray) -> None:
    distances = (volume.corners() - point) @ normal
    if distances.min() > _EPS or distances.max() < -_EPS:
        raise BadRenderParameter("the plane does not intersect the volume")


def _at(axis: int, index: int | slice) -> tuple[int | slice, ...]:
    """An index selecting ``index`` along ``axis`` (a view, where ``np.take`` copies)."""
    selection: list[int | slice] = [slice(None)] * 3
    selection[axis] = index
    return tuple(selection)


def _cut(volume: Volume, axis: int, index: float) -> np.ndarray:
    """Modality values (float32) of the 2D cut at fractional ``index`` along ``axis``:
    linear between the two neighbouring voxel planes, a view of a float32 volume's
    voxels when ``index`` falls on one of them."""
    voxels, along = volume.planes_along(axis)
    size = voxels.shape[along]
    index = min(max(index, 0.0), size - 1.0)
    low = int(math.floor(index))
    fraction = index - low
    if fraction > 1 - 1e-6:
        low, fraction = low + 1, 0.0
    if fraction < 1e-6 or low + 1 >= size:
        plane = voxels[_at(along, min(low, size - 1))]
        if plane.dtype == np.float32:
            return volume.modality(plane)
        return volume.modality(_float_copy(plane), in_place=True)
    below, above = _float_copy(np.moveaxis(voxels[_at(along, slice(low, low + 2))], along, 0))
    above -= below
    above *= np.float32(fraction)
    above += below
    return volume.modality(above, in_place=True)


def _float_copy(view: np.ndarray) -> np.ndarray:
    """A float32 copy of voxel values, to interpolate in one type.

    numpy interpolating int16 into float32 (mixed types, buffered casts) is slower
    than converting once and working in float32, and converting while gathering
    voxels strided through the volume is slower than gathering them in their own
    type first (figures: docs/performance.md, "Measurements behind the code").
    """
    return (view if view.flags.c_contiguous else view.copy()).astype(np.float32)


def _neighbours(coord: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    clipped = np.clip(coord, 0.0, size - 1.0)
    low = np.floor(clipped).astype(np.intp)
    np.minimum(low, max(size - 2, 0), out=low)
    high = np.minimum(low + 1, size - 1)
    return low, high, (clipped - low).astype(np.float32)


def _all_inside(progression: np.ndarray, size: int) -> bool:
    """Whether every coordinate of an arithmetic progression is inside ``0..size - 1``."""
    ends = (float(progression[0]), float(progression[-1]))
    return min(ends) >= -_EPS and max(ends) <= size - 1 + _EPS


def _inside(coord: np.ndarray, size: int) -> np.ndarray:
    return np.asarray((coord >= -_EPS) & (coord <= size - 1 + _EPS))


def bilinear(image: np.ndarray, y: np.ndarray, x: np.ndarray, fill: float) -> np.ndarray:
    """Sample ``image`` at fractional (y, x); ``fill`` outside it."""
    height, width = image.shape
    y0, y1, fy = _neighbours(y, height)
    x0, x1, fx = _neighbours(x, width)
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    values = top * (1 - fy) + bottom * fy
    inside = _inside(y, height) & _inside(x, width)
    return np.where(inside, values, np.float32(fill)).astype(np.float32)


def trilinear(voxels: np.ndarray, coords: np.ndarray, fill: float) -> np.ndarray:
    """Sample ``voxels`` at fractional (k, r, c) = ``coords``; ``fill`` outside."""
    slices, rows, columns = voxels.shape
    k0, k1, fk = _neighbours(coords[0], slices)
    r0, r1, fr = _neighbours(coords[1], rows)
    c0, c1, fc = _neighbours(coords[2], columns)
    flat = voxels.reshape(-1)
    result = np.zeros(coords.shape[1:], dtype=np.float32)
    for k, wk in ((k0, 1 - fk), (k1, fk)):
        for r, wr in ((r0, 1 - fr), (r1, fr)):
            base = (k * rows + r) * columns
            weight = wk * wr
            result += flat[base + c0] * (weight * (1 - fc))
            result += flat[base + c1] * (weight * fc)
    inside = _inside(coords[0], slices) & _inside(coords[1], rows) & _inside(coords[2], columns)
    return np.where(inside, result, np.float32(fill)).astype(np.float32)


def _other_axes(axis: int) -> tuple[int, int]:
    first, second = (other for other in range(3) if other != axis)
    return first, second


def _native(volume: Volume, grid: _Grid, axis: int | None) -> bool:
    return (
        axis == 0
        and grid.row_spacing == volume.row_spacing
        and grid.column_spacing == volume.column_spacing
    )


def mpr(
    volume: Volume,
    *,
    normal: Vector | str,
    point: Vector | None = None,
    spacing: float | None = None,
) -> Plane:
    """The plane through ``point`` (default: volume centre) perpendicular to ``normal``.

    ``normal`` is a patient-space vector or axial/coronal/sagittal. Pixels are
    square at ``spacing`` mm (default: the finer in-plane spacing of the
    volume) and the plane covers the volume's extent; a plane parallel to the
    acquired slices keeps the slice grid and is cut from the array.
    """
    direction = resolve_normal(normal)
    origin = _point(volume, point)
    _check_spacing(spacing)
    _check_intersects(volume, direction, origin)
    axis = _aligned_axis(volume, direction)
    grid = _grid(volume, direction, origin, spacing, axis)
    if axis is None:
        coords = grid.index_coords()
        return grid.plane(volume.modality(trilinear(volume.voxels, coords, volume.raw_pad)))
    image = _cut(volume, axis, float(grid.base[axis]))
    if not _native(volume, grid, axis):
        image = _resample(image, grid, volume, axis)
    return grid.plane(image)


def _modality(volume: Volume, image: np.ndarray) -> np.ndarray:
    """Modality values of a 2D cut of the volume, rescaled in place when the cut is a
    new array (cutting first, then rescaling, touches the fewest values)."""
    return volume.modality(image, in_place=image.flags.owndata and image.flags.writeable)


def separable_bilinear(image: np.ndarray, y: np.ndarray, x: np.ndarray, fill: float) -> np.ndarray:
    """Bilinear resampling on a grid aligned with the image axes: rows ``y``, columns ``x``.

    ``y`` and ``x`` are arithmetic progressions. Interpolates along one axis,
    then the other (whole rows or columns at a time, never single pixels),
    starting with the axis that does not enlarge the image. The values are
    float32, or the image itself where nothing needed interpolating.
    """
    height, width = image.shape
    if y.size * width <= x.size * height:
        values = _lerp_axis(_lerp_axis(image, y, height, axis=0), x, width, axis=1)
    else:
        values = _lerp_axis(_lerp_axis(image, x, width, axis=1), y, height, axis=0)
    if _all_inside(y, height) and _all_inside(x, width):
        return values
    outside_y, outside_x = ~_inside(y, height), ~_inside(x, width)
    if values is image or values.dtype != np.float32:
        values = values.astype(np.float32)
    values[outside_y, :] = fill
    values[:, outside_x] = fill
    return values


def _lerp_axis(image: np.ndarray, coord: np.ndarray, size: int, *, axis: int) -> np.ndarray:
    """Linear interpolation of ``image`` at ``coord`` (an arithmetic progression) along
    ``axis``, clamped to the edges; an identity mapping (the plane keeps the volume's
    own voxels on that axis, see :func:`_snap`) costs nothing."""
    if coord.size == size and abs(coord[0]) < 1e-6 and abs(coord[-1] - (size - 1)) < 1e-6:
        return image
    low, high, frac = _neighbours(coord, size)
    below = np.take(image, low, axis=axis)
    if axis == 0 and coord.size > size:
        # Enlarging: the differences of neighbouring rows once, then one gather of them.
        steps = np.subtract(image[1:], image[:-1], dtype=np.float32)
        result: np.ndarray = np.take(steps, np.minimum(low, size - 2), axis=0)
    else:
        result = np.subtract(np.take(image, high, axis=axis), below, dtype=np.float32)
    result *= frac[:, None] if axis == 0 else frac[None, :]
    result += below
    return result


def _resample(image: np.ndarray, grid: _Grid, volume: Volume, axis: int) -> np.ndarray:
    """Sample the 2D ``image`` (modality values at a constant index along ``axis``) on
    the plane grid."""
    first, second = _other_axes(axis)
    base, along_row, down_column = grid.base, grid.along_row, grid.down_column
    rows = np.arange(grid.rows, dtype=np.float64)
    columns = np.arange(grid.columns, dtype=np.float64)
    fill = volume.pad_value
    if abs(along_row[first]) < 1e-9 and abs(down_column[second]) < 1e-9:
        y = base[first] + down_column[first] * rows
        x = base[second] + along_row[second] * columns
        return separable_bilinear(image, y, x, fill)
    if abs(down_column[first]) < 1e-9 and abs(along_row[second]) < 1e-9:
        y = base[first] + along_row[first] * columns
        x = base[second] + down_column[second] * rows
        return separable_bilinear(image, y, x, fill).T
    coords = grid.index_coords()
    return bilinear(image, coords[first], coords[second], fill)


def _raw_mode(volume: Volume, mode: MipMode) -> MipMode:
    """The projection of voxel values giving ``mode`` of modality values: a negative
    Rescale Slope turns the largest voxel value into the smallest modality value."""
    if volume.rescale_slope < 0 and mode != "avg":
        return "min" if mode == "max" else "max"
    return mode


def _reduce(stack: np.ndarray, axis: int, mode: MipMode) -> np.ndarray:
    if mode == "max":
        return np.asarray(stack.max(axis=axis))
    if mode == "min":
        return np.asarray(stack.min(axis=axis))
    return np.asarray(stack.mean(axis=axis, dtype=np.float32))


def mip(
    volume: Volume,
    *,
    normal: Vector | str,
    point: Vector | None = None,
    thickness: float | None = None,
    mode: MipMode = "max",
) -> Plane:
    """Project the volume along ``normal`` over a slab centred on ``point``.

    ``thickness`` is the slab thickness in mm (whole volume when None);
    ``mode`` max, min or avg. The result lies in the plane through ``point``
    with the grid :func:`mpr` would use.
    """
    if mode not in MIP_MODES:
        raise BadRenderParameter(f"mode must be one of {', '.join(MIP_MODES)}")
    if thickness is not None and not (math.isfinite(thickness) and thickness > 0):
        raise BadRenderParameter("thickness must be a positive number of mm")
    direction = resolve_normal(normal)
    origin = _point(volume, point)
    _check_intersects(volume, direction, origin)
    axis = _aligned_axis(volume, direction)
    grid = _grid(volume, direction, origin, None, axis)
    if axis is None:
        return grid.plane(volume.modality(_march(volume, grid, direction, thickness, mode)))
    size = volume.shape[axis]
    centre = float(grid.base[axis])
    low, high = 0, size - 1
    if thickness is not None:
        per_index = abs(float(np.dot(_axis_vectors(volume)[axis], direction)))
        half = thickness / 2 / per_index
        low = max(low, math.ceil(centre - half - 1e-6))
        high = min(high, math.floor(centre + half + 1e-6))
        if low > high:
            low = high = min(max(round(centre), 0), size - 1)
    voxels, along = volume.planes_along(axis)
    image = _reduce(voxels[_at(along, slice(low, high + 1))], along, _raw_mode(volume, mode))
    image = _modality(volume, image)
    if not _native(volume, grid, axis):
        image = _resample(image, grid, volume, axis)
    return grid.plane(image)


def _march(
    volume: Volume, grid: _Grid, direction: np.ndarray, thickness: float | None, mode: MipMode
) -> np.ndarray:
    """Oblique projection of voxel values, one sample per volume plane along each ray.

    The rays cross the constant-index planes of the array axis most aligned
    with ``direction`` once each; every plane is sampled bilinearly where the
    rays cross it (a shear-warp traversal), and the samples are reduced as
    they come. Samples farther than ``thickness / 2`` from the grid plane are
    left out.
    """
    axis = int(np.argmax(np.abs(volume.axis_normals @ direction)))
    first, second = _other_axes(axis)
    coords = grid.index_coords().reshape(3, -1)
    shift = volume.patient_to_index @ direction
    size = volume.shape[axis]
    indices = range(size)
    reach = math.inf
    if thickness is not None:
        reach = abs(shift[axis]) * thickness / 2 + 1e-6
        low = math.floor(float(coords[axis].min()) - reach)
        high = math.ceil(float(coords[axis].max()) + reach)
        indices = range(max(low, 0), min(high, size - 1) + 1)
    every = np.arange(coords.shape[1])
    accumulated: np.ndarray = np.full(
        coords.shape[1], math.nan if mode != "avg" else 0.0, np.float32
    )
    counts = np.zeros(coords.shape[1], dtype=np.float32)
    combine = {"max": np.fmax, "min": np.fmin, "avg": np.add}[_raw_mode(volume, mode)]
    for index in indices:
        # Only rays that cross this plane inside the slab and inside the slice.
        pixels = every
        if thickness is not None:
            pixels = np.flatnonzero(np.abs(coords[axis] - index) <= reach)
        distance = (index - coords[axis, pixels]) / shift[axis]
        y = coords[first, pixels] + distance * shift[first]
        x = coords[second, pixels] + distance * shift[second]
        voxels, along = volume.planes_along(axis)
        image = voxels[_at(along, index)]
        inside = _inside(y, image.shape[0]) & _inside(x, image.shape[1])
        pixels, y, x = pixels[inside], y[inside], x[inside]
        values = bilinear(image, y, x, math.nan)
        accumulated[pixels] = combine(accumulated[pixels], values)
        counts[pixels] += 1
    if mode == "avg":
        accumulated = np.asarray(accumulated / np.maximum(counts, 1), dtype=np.float32)
    result = np.where(counts > 0, accumulated, np.float32(volume.raw_pad))
    return result.astype(np.float32).reshape(grid.rows, grid.columns)
