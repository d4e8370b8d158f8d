"""Browser-test support: Debian's Chromium driven by Playwright (never a downloaded browser),
a seeded server, console-error collection and screenshot checks."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageStat

from tests.conftest import ROOT

CHROMIUM = os.environ.get("NOCTIS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
BOUNDARY = "noctis-test-boundary"


def multipart(instances: list[bytes]) -> tuple[bytes, str]:
    parts = []
    for data in instances:
        parts.append(f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        parts.append(data + b"\r\n")
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts), f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def stow_all(base_url: str, instances: list[bytes], batch: int = 50, **headers: str) -> None:
    for start in range(0, len(instances), batch):
        body, content_type = multipart(instances[start : start + batch])
        response = httpx.post(
            f"{base_url}/dicom-web/studies",
            content=body,
            headers={"Content-Type": content_type, "Accept": "application/dicom+json", **headers},
            timeout=120,
        )
        assert response.status_code == 200, response.text


@dataclass
class PageWatch:
    """A page and what went wrong on it (console errors, uncaught exceptions)."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def screenshot(self, name: str, *, width: int, height: int) -> Image.Image:
        """Saves ``test-artifacts/ui/NAME.png`` and checks it is the viewport's size and not blank."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        data = self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
        image = Image.open(io.BytesIO(data)).convert("L")
        assert image.size == (width, height)
        assert ImageStat.Stat(image).stddev[0] > 5, f"{name}: the screenshot is blank"
        return image


def chromium_available() -> bool:
    return Path(CHROMIUM).exists()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not chromium_available():
        pytest.skip(f"{CHROMIUM} is not installed (scripts/setup-test-deps.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_page(browser: Any, *, width: int = 1280, height: int = 800) -> tuple[Any, PageWatch]:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    watch = PageWatch(page)
    page.on(
        "console",
        lambda msg: watch.errors.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    page.on("pageerror", lambda exc: watch.errors.append(f"page error: {exc}"))
    page.set_default_timeout(15_000)
    return context, watch


@pytest.fixture
def watched(browser: Any) -> Iterator[PageWatch]:
    """A fresh page (1280x800); the test fails if the page logged any console error."""
    context, watch = open_page(browser)
    yield watch
    context.close()
    assert watch.errors == [], watch.errors


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6].upper()}"


def wait_until(page: Any, expression: str, timeout: float = 15.0) -> Any:
    """Polls ``expression`` (a JS function source) with ``page.evaluate`` until truthy.

    ``page.wait_for_function`` evaluates strings with ``eval``, which the page's CSP
    forbids (as it should); ``evaluate`` runs through the debugging protocol.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        page.wait_for_timeout(50)
