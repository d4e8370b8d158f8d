"""``noctis-pacs render``: a PNG of an instance frame, an MPR plane or a MIP, to a file.

Part of the wiring (it reads the archive and uses the rendering module), so
it may import ``storage``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from noctis_pacs.app.cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, common_options
from noctis_pacs.core.settings import Settings

#: The output file's suffix chooses its format; any other suffix is refused.
OUTPUT_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}


def _floats(text: str | None, name: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--{name}: comma-separated numbers") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"--{name}: three numbers x,y,z")
    return values


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "render", help="write a PNG/JPEG of an instance frame, an MPR plane or a MIP"
    )
    common_options(parser)
    parser.add_argument("--study", required=True, help="Study Instance UID")
    parser.add_argument("--series", help="Series Instance UID (needed for --mpr / --mip)")
    parser.add_argument("--instance", help="SOP Instance UID (default: the middle instance)")
    parser.add_argument("--frame", type=int, default=1, help="frame number (default 1)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--mpr", action="store_true", help="a plane through the series volume")
    what.add_argument("--mip", action="store_true", help="a projection of the series volume")
    parser.add_argument("--plane", default="axial", help="axial, coronal or sagittal")
    parser.add_argument("--normal", help="plane normal nx,ny,nz (patient coordinates)")
    parser.add_argument("--point", help="point x,y,z in mm (default: the volume centre)")
    parser.add_argument("--thickness", type=float, help="MIP slab thickness in mm")
    parser.add_argument("--mode", default="max", choices=["max", "min", "avg"])
    parser.add_argument("--window", help="center,width[,function]")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    parser.add_argument("-o", "--output", type=Path, required=True, help="file (.png or .jpg)")
    parser.set_defaults(handler=cmd_render)


def cmd_render(args: argparse.Namespace, settings: Settings) -> int:
    from pydicom import dcmread

    from noctis_pacs import rendering
    from storage.archive import Archive

    if (args.mpr or args.mip) and not args.series:
        print("render: --mpr and --mip need --series", file=sys.stderr)
        return EXIT_USAGE
    suffix = args.output.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        print(
            f"render: cannot write {args.output}: the suffix {suffix or '(none)'} names no "
            f"format this verb writes; use {', '.join(OUTPUT_FORMATS)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    archive = Archive(settings)
    try:
        found = archive.locate_uids(args.study, args.series, args.instance)
        if not found:
            print("render: no such study, series or instance", file=sys.stderr)
            return EXIT_FAILED

        def header(location: Any) -> Any:
            with archive.open_blob(location) as fh:
                return dcmread(fh, stop_before_pixels=True)

        window = rendering.Window.parse(args.window) if args.window else None
        if args.mpr or args.mip:
            volume = rendering.volume_from_frames(
                (header(loc), archive.frame_bytes(loc, 1), loc.transfer_syntax_uid) for loc in found
            )
            normal = _floats(args.normal, "normal") or args.plane
            point = _floats(args.point, "point")
            if args.mpr:
                plane = rendering.mpr(volume, normal=normal, point=point)
            else:
                plane = rendering.mip(
                    volume, normal=normal, point=point, thickness=args.thickness, mode=args.mode
                )
            image = rendering.apply_voi(plane.pixels, volume.header, window)
            geometry = plane.dicom_strings()
            print(
                f"{args.output}: {geometry['Rows']}x{geometry['Columns']}, "
                f"position {geometry['ImagePositionPatient']}, "
                f"orientation {geometry['ImageOrientationPatient']}, "
                f"spacing {geometry['PixelSpacing']}"
            )
        else:
            location = found[len(found) // 2] if not args.instance else found[0]
            frame = archive.frame_bytes(location, args.frame)
            image = rendering.render_frame(
                header(location), frame, location.transfer_syntax_uid, window=window
            )
            print(f"{args.output}: {image.shape[1]}x{image.shape[0]}")
    except rendering.RenderingError as exc:
        print(f"render: {exc.reason}", file=sys.stderr)
        return EXIT_FAILED
    except (IndexError, LookupError) as exc:
        print(f"render: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        archive.close()
    data = (
        rendering.encode_jpeg(image, quality=args.quality)
        if OUTPUT_FORMATS[suffix] == "jpeg"
        else rendering.encode_png(image)
    )
    args.output.write_bytes(data)
    return EXIT_OK
