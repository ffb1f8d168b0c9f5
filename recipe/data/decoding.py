"""Turning one image file into 8-bit pixels: bit depth, alpha, palette and colour space, under a pixel cap.

Every model of the recipe reads uint8 gray (H, W) or RGB (H, W, 3) pixels. Files are not always stored that way,
and a silent ``PIL.Image.convert`` gets several of them wrong:

* 16-bit gray (PIL modes ``I;16``, ``I;16B``; microscopes, X-ray and astronomy detectors): ``convert("L")``
  clips every value above 255, so a detector image with values around 30,000 becomes all white. Here the
  values are scaled by the file's bit depth (``v * 255 / 65535``); 32-bit integer (``I``) and float (``F``)
  files are scaled when their values fit a known range (0..255, 0..65535, or 0..1 for floats) and refused
  with their range named otherwise, since no bit depth says what their numbers mean.
* Transparency (``RGBA``, ``LA``, ``PA``, a palette with a transparent index): ``convert("RGB")`` drops the
  alpha channel and keeps whatever colour sits under transparent pixels (often black, or streaks left by
  the editor). Here the image is composited on a stated background (``data.background``, white by default),
  which is what a viewer shows.
* Palette files (``P``) are expanded through their palette; a palette of grays gives a gray image.
* CMYK, YCbCr and LAB files are converted to RGB, and the conversion is said.

Every conversion is returned as a short text (:attr:`Converted.note`) that the manifest keeps per file, so the
inspect stage can say what was done (``image_decoding``).

A decompression bomb (a small file that decodes to billions of pixels: a 481 KB PNG can hold 20,000 x 20,000)
is refused from the header, before any pixel is decoded: width x height above ``data.max_image_pixels`` is an
error naming the file and the cap. PIL's own :class:`PIL.Image.DecompressionBombWarning` is made an error too
(once, when this module is imported: a bomb must never decode just because a warning was printed), and the
threads that decode a folder share a budget of pixels in flight (:data:`PIXELS_IN_FLIGHT`), so peak memory stays
bounded by the cap however many threads decode.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageColor

DEFAULT_MAX_PIXELS = 40_000_000  # a 40-megapixel photo decodes; a 20,000 x 20,000 bomb does not
WHITE = (255, 255, 255)
HIGH_DEPTH_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
OTHER_COLOUR_SPACES = frozenset({"CMYK", "YCbCr", "LAB", "HSV"})


def refuse_bomb_warnings() -> None:
    """Make PIL's DecompressionBombWarning (PIL saying "this may be an attack", then decoding it anyway) an
    error, process-wide; idempotent (an identical filter is replaced, not added twice)."""
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


refuse_bomb_warnings()


class DecodeRefused(ValueError):
    """A file whose pixels cannot be turned into 8-bit values without guessing (the message says why)."""


class TooManyPixels(DecodeRefused):
    """A file whose header declares more pixels than the cap: a decompression bomb, or a very large image."""


def parse_background(value: str) -> tuple[int, int, int]:
    """A colour name or hex code (``white``, ``black``, ``#808080``) as an RGB triple of 0..255.

    Raises ValueError naming the value and the accepted forms (PIL's :func:`PIL.ImageColor.getrgb` reads it)."""
    try:
        rgb = ImageColor.getrgb(value)
    except (ValueError, AttributeError):
        raise ValueError(
            f"{value!r} is not a colour: use a name (white, black, gray) or a hex code such as #808080"
        ) from None
    return int(rgb[0]), int(rgb[1]), int(rgb[2])


def luma(rgb: tuple[int, int, int]) -> int:
    """ITU-R 601-2 luma of an RGB triple, as PIL's ``convert("L")`` computes it."""
    r, g, b = rgb
    return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16


class _PixelBudget:
    """Pixels being decoded at once, across threads: a decode waits until its pixels fit under the budget
    (one image alone always proceeds), so N threads cannot hold N images of the cap's size at a time."""

    def __init__(self, budget: int) -> None:
        self.budget, self.in_flight = budget, 0
        self.cond = threading.Condition()

    @contextmanager
    def hold(self, n: int) -> Iterator[None]:
        with self.cond:
            self.cond.wait_for(lambda: self.in_flight == 0 or self.in_flight + n <= self.budget)
            self.in_flight += n
        try:
            yield
        finally:
            with self.cond:
                self.in_flight -= n
                self.cond.notify_all()


PIXELS_IN_FLIGHT = _PixelBudget(DEFAULT_MAX_PIXELS)


def check_pixels(img: Image.Image, max_pixels: int) -> None:
    """Raise :class:`TooManyPixels` when the header's width x height exceeds ``max_pixels`` (nothing decoded)."""
    w, h = img.size
    if w * h > max_pixels:
        raise TooManyPixels(
            f"decompression bomb refused: the header declares {w} x {h} = {w * h:,} pixels, above "
            f"data.max_image_pixels={max_pixels:,}; if the image is genuine, raise data.max_image_pixels "
            "(memory grows about 4 bytes a pixel) or downscale the file"
        )


def bomb_message(e: Exception, max_pixels: int) -> str:
    """PIL's decompression-bomb error, said as the cause with the setting that governs it."""
    return (
        f"decompression bomb refused: {e} (data.max_image_pixels={max_pixels:,}); if the image is genuine, raise "
        "data.max_image_pixels or downscale the file"
    )


@dataclass(frozen=True)
class Converted:
    """An image in mode ``L`` or ``RGB`` (8 bits a channel), and what was done to get there ("" when nothing)."""

    image: Image.Image
    note: str = ""


def to_8bit(img: Image.Image, background: tuple[int, int, int] = WHITE) -> Converted:
    """The loaded ``img`` as 8-bit gray or RGB, scaled, composited and expanded as the module docstring says.

    Raises :class:`DecodeRefused` for 32-bit integer or float pixels outside every known range, and for
    non-finite float pixels."""
    mode = img.mode
    if mode in ("1", "L"):
        return Converted(img.convert("L"))
    if mode == "RGB":
        return Converted(img)
    if mode in HIGH_DEPTH_MODES:
        return _high_depth(img)
    if mode in ("P", "PA"):
        return _palette(img, background)
    if mode in ALPHA_MODES:
        return _composite(img, background, "")
    if mode in OTHER_COLOUR_SPACES:
        return Converted(img.convert("RGB"), f"{mode} converted to RGB")
    gray = len(img.getbands()) == 1
    return Converted(img.convert("L" if gray else "RGB"), f"mode {mode} converted to {'L' if gray else 'RGB'}")


def _high_depth(img: Image.Image) -> Converted:
    """16-bit, 32-bit integer or float gray pixels scaled to 0..255 by their bit depth (or known range)."""
    a = np.asarray(img)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise DecodeRefused(f"mode {img.mode}: pixels include NaN or infinity; fix the file or drop it")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    seen = f"values {fmt_value(lo)}..{fmt_value(hi)}"
    if img.mode.startswith("I;16"):
        scale, what = 255 / 65535, f"16-bit gray ({img.mode}, {seen}) scaled to 8 bits by its bit depth (x 255/65535)"
    elif lo >= 0 and hi <= 255 and (img.mode == "I" or hi > 1):
        scale, what = 1.0, f"mode {img.mode} gray with {seen} (within 0..255) read as 8-bit"
    elif img.mode == "I" and lo >= 0 and hi <= 65535:
        scale, what = 255 / 65535, f"32-bit integer gray with {seen} read as 16-bit (x 255/65535)"
    elif img.mode == "F" and lo >= 0 and hi <= 1:
        scale, what = 255.0, f"float gray with {seen} scaled from 0..1 (x 255)"
    else:
        raise DecodeRefused(
            f"mode {img.mode} pixels span {fmt_value(lo)}..{fmt_value(hi)}: no bit depth says how to scale them "
            "to 8 bits (known ranges: 0..255, 0..65535, floats 0..1); save the files as 8- or 16-bit PNG"
        )
    out = np.clip(np.rint(a.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    return Converted(Image.fromarray(out, "L"), what)


def _palette(img: Image.Image, background: tuple[int, int, int]) -> Converted:
    """A palette file expanded through its palette (gray when every colour used is gray), transparency composited."""
    transparent = img.mode == "PA" or "transparency" in img.info
    rgba = img.convert("RGBA" if transparent else "RGB")
    if transparent:
        done = _composite(rgba, background, "palette expanded")
        rgb = np.asarray(done.image)
        note = done.note
    else:
        rgb, note = np.asarray(rgba), "palette expanded"
    if rgb.ndim == 3 and (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return Converted(Image.fromarray(np.ascontiguousarray(rgb[..., 0]), "L"), note + " (gray palette: 1 channel)")
    return Converted(Image.fromarray(rgb, "RGB") if rgb.ndim == 3 else Image.fromarray(rgb, "L"), note)


def _composite(img: Image.Image, background: tuple[int, int, int], prefix: str) -> Converted:
    """``out = colour * alpha + background * (1 - alpha)``, in the image's own gray or colour mode; a fully
    opaque alpha channel is dropped without a note (nothing under it was hidden)."""
    gray = img.mode in ("LA", "La")
    a = np.asarray(img.convert("LA" if gray else "RGBA"))
    colour, alpha = a[..., :-1], a[..., -1:]
    notes = [prefix] if prefix else []
    if (alpha == 255).all():
        out = colour
    else:
        bg = np.asarray([luma(background)] if gray else background, dtype=np.float32)
        f = alpha.astype(np.float32) / 255
        out = np.rint(colour * f + bg * (1 - f)).astype(np.uint8)
        hex_colour = "#{:02x}{:02x}{:02x}".format(*background)
        notes.append(f"alpha: {float((alpha < 255).mean()):.0%} of pixels transparent, composited on {hex_colour}")
    out = np.ascontiguousarray(out[..., 0] if gray else out)
    return Converted(Image.fromarray(out, "L" if gray else "RGB"), ", ".join(notes))


def fmt_value(v: float) -> str:
    """A pixel value for a message: whole numbers with thousands separators, fractions with 3 significant digits."""
    return f"{int(v):,}" if float(v).is_integer() else f"{v:.3g}"
