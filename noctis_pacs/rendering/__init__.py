"""Rendering: frames to display images, series to MPR planes and projections.

Pure functions over numpy arrays and pydicom header datasets; no I/O besides
what the caller passes in. See the modules for the standard each step
follows: :mod:`.decode` (PS3.5, PS3.3 C.7.6.3), :mod:`.lut` (PS3.3 C.11),
:mod:`.render`, :mod:`.encode` (PS3.18 8.3.5), :mod:`.volume`,
:mod:`.planes` and :mod:`.cache` (MPR/MIP, beyond the standard).
"""

from noctis_pacs.rendering.cache import VolumeCache
from noctis_pacs.rendering.decode import decode_frame
from noctis_pacs.rendering.encode import Viewport, encode_jpeg, encode_png, fit_viewport
from noctis_pacs.rendering.errors import (
    BadRenderParameter,
    NotRenderable,
    RenderingError,
    VolumeError,
)
from noctis_pacs.rendering.frame_split import iter_frames, transfer_syntax_of
from noctis_pacs.rendering.lut import (
    Window,
    apply_modality_lut,
    apply_monochrome1,
    apply_voi,
    apply_window,
)
from noctis_pacs.rendering.planes import PLANE_NORMALS, Plane, mip, mpr, resolve_normal
from noctis_pacs.rendering.render import render_frame, render_pixels
from noctis_pacs.rendering.volume import Volume, build_volume, volume_from_frames

__all__ = [
    "PLANE_NORMALS",
    "BadRenderParameter",
    "NotRenderable",
    "Plane",
    "RenderingError",
    "Viewport",
    "Volume",
    "VolumeCache",
    "VolumeError",
    "Window",
    "apply_modality_lut",
    "apply_monochrome1",
    "apply_voi",
    "apply_window",
    "build_volume",
    "decode_frame",
    "encode_jpeg",
    "encode_png",
    "fit_viewport",
    "iter_frames",
    "mip",
    "mpr",
    "render_frame",
    "render_pixels",
    "resolve_normal",
    "transfer_syntax_of",
    "volume_from_frames",
]
