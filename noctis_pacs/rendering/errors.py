"""Typed errors raised by the rendering package.

Each carries a human-readable ``reason`` that protocol adapters put in the
response (an HTTP 4xx body, a CLI message); none of them means the archive
is broken, only that this request cannot be rendered.
"""

from __future__ import annotations


class RenderingError(Exception):
    """Base class of every rendering error; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotRenderable(RenderingError):
    """The instance or frame cannot be turned into an image.

    Raised for missing or inconsistent Image Pixel module attributes
    (PS3.3 C.7.6.3), truncated frames, transfer syntaxes without an installed
    decoder and frames the decoder rejects.
    """


class BadRenderParameter(RenderingError, ValueError):
    """A rendering parameter given by the caller is invalid.

    Examples: a window width below 1 for LINEAR (PS3.3 C.11.2.1.2.1), a JPEG
    quality outside 1..100, a viewport region outside the image
    (PS3.18 8.3.5.1.3).
    """


class VolumeError(RenderingError):
    """A series cannot be assembled into a volume for MPR or MIP."""
