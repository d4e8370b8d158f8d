"""The web application in a real browser (issue 16): Debian's Chromium driven by Playwright
against a real server holding 1,000 studies and a 512x512 CT series.

    .venv/bin/python bench/bench_ui.py [--studies 1000] [--slices 64] [--repeat 5]

Measured, each a median over ``--repeat`` runs:
- study list: from navigation to the first page of the study list shown with its total
  (wall clock around the browser) and the page's own QIDO-RS + render time;
- first image: from opening the study (hash change) to the first frame drawn
  (the viewer's own measure), with an empty browser cache;
- scrolling: images drawn per second while stepping through the series as fast as
  the frames arrive (prefetch on), the first pass (nothing cached);
- MPR: from a click in the axial plane to both other planes re-rendered and drawn.

Targets (issue 16): list < 1 s, first image < 0.5 s, scrolling >= 15 images/s,
MPR plane update < 150 ms.  JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_dicomweb import start_noctis, stow_all  # noqa: E402
from tests.factory import ct_series, make_instance, to_bytes, uid  # noqa: E402
from tests.ui_support import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

TARGETS = {"study_list_ms": 1000, "first_image_ms": 500, "scroll_images_per_s": 15, "mpr_ms": 150}

SCROLL_JS = """async (count) => {
    const el = document.querySelector('.viewport.active');
    const started = performance.now();
    for (let i = 1; i <= count; i += 1) {
        const drawn = new Promise((resolve) => {
            const on = (e) => { if (e.detail.index === i) { el.removeEventListener('drawn', on); resolve(); } };
            el.addEventListener('drawn', on);
        });
        el.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowDown', bubbles: true}));
        await drawn;
    }
    return (performance.now() - started) / 1000;
}"""

MPR_JS = """async ([x, y]) => {
    const planes = ['coronal', 'sagittal'].map((p) => document.querySelector(`.plane-${p}`));
    const before = planes.map((el) => Number(el.dataset.updated));
    const axial = document.querySelector('.plane-axial');
    const rect = axial.getBoundingClientRect();
    const started = performance.now();
    const opts = {clientX: rect.left + rect.width * x, clientY: rect.top + rect.height * y,
                  bubbles: true, button: 0, pointerId: 1};
    axial.dispatchEvent(new PointerEvent('pointerdown', opts));
    axial.dispatchEvent(new PointerEvent('pointerup', opts));
    await new Promise((resolve) => {
        const check = () => planes.every((el, i) => Number(el.dataset.updated) > before[i])
            ? resolve() : requestAnimationFrame(check);
        check();
    });
    return performance.now() - started;
}"""


def corpus(studies: int) -> list[bytes]:
    return [
        make_instance(
            patient_name=f"Bench^Patient{n:04d}",
            patient_id=f"B{n:05d}",
            accession=f"ACC{n:06d}",
            study_date=f"20{10 + n % 15:02d}{1 + n % 12:02d}{1 + n % 28:02d}",
            modality=("CT", "MR", "CR", "US")[n % 4],
            rows=16,
            columns=16,
        )
        for n in range(studies)
    ]


def median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def bench_browser(base: str, study: str, series: str, total: int, repeat: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            wall, inner = [], []
            for _ in range(repeat):
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                page = context.new_page()
                started = time.perf_counter()
                page.goto(f"{base}/ui/#/studies")
                page.wait_for_selector(f".count[data-total='{total}']", timeout=30_000)
                wall.append((time.perf_counter() - started) * 1000)
                inner.append(
                    page.evaluate(
                        "() => performance.getEntriesByName('noctis:study-list').at(-1).duration"
                    )
                )
                context.close()
            out["study_list_ms"] = median(wall)
            out["study_list_qido_and_render_ms"] = median(inner)

            first, scroll, mpr, plane_requests = [], [], [], []
            for _ in range(repeat):
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                page = context.new_page()
                page.goto(f"{base}/ui/#/studies")
                page.wait_for_selector("tr.study")
                page.evaluate(f"() => {{ location.hash = '#/study/{study}'; }}")
                page.wait_for_selector("main[data-first-image-ms]", timeout=30_000)
                first.append(float(page.locator("main").get_attribute("data-first-image-ms")))
                page.locator(".viewport.active").focus()
                steps = 60
                seconds = page.evaluate(SCROLL_JS, steps)
                scroll.append(steps / seconds)
                page.evaluate(f"() => {{ location.hash = '#/mpr/{study}/{series}'; }}")
                for plane in ("axial", "coronal", "sagittal"):
                    page.wait_for_selector(f".plane-{plane}[data-updated='1']", timeout=60_000)
                for x, y in ((0.4, 0.45), (0.6, 0.55), (0.5, 0.35), (0.45, 0.6), (0.55, 0.5)):
                    mpr.append(page.evaluate(MPR_JS, [x, y]))
                    plane_requests.append(
                        float(page.locator(".plane-coronal").get_attribute("data-ms"))
                    )
                context.close()
            out["first_image_ms"] = median(first)
            out["scroll_images_per_s"] = median(scroll)
            out["mpr_ms"] = median(mpr)
            out["mpr_plane_request_ms"] = median(plane_requests)
        finally:
            browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    study, series = uid(), uid()
    ct = [to_bytes(ds) for ds in ct_series(args.slices, 512, study_uid=study, series_uid=series)]
    items = corpus(args.studies)
    work = Path(tempfile.mkdtemp(prefix="noctis-bench-ui-", dir=ROOT / "bench"))
    server = start_noctis(work)
    try:
        with httpx.Client(timeout=300) as client:
            stow_all(client, server.root, items, 100)
            stow_all(client, server.root, ct, 16)
        base = server.root.removesuffix("/dicom-web")
        figures = bench_browser(base, study, series, args.studies + 1, args.repeat)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    results = {
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "corpus": f"{args.studies} studies + {args.slices} x 512x512 int16 CT (synthetic)",
        "repeat": args.repeat,
        "figures": figures,
        "targets": TARGETS,
    }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"ui-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps(results, indent=2)
    )
    for key, value in figures.items():
        target = TARGETS.get(key)
        verdict = ""
        if target is not None:
            met = value >= target if key.endswith("per_s") else value < target
            verdict = f"  (target {'>=' if key.endswith('per_s') else '<'} {target}: {'met' if met else 'MISSED'})"
        print(f"{key:32} {value:10}{verdict}")


if __name__ == "__main__":
    main()
