"""Font discovery and cached glyph masks for plate rendering.

Fonts come from Debian packages (fonts-noto-cjk for the province characters, fonts-dejavu
for Latin letters and digits). They are looked up with fc-match first and known paths as a
fallback, so a missing package fails with a message naming the package, not a PIL trace.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_CJK_PATHS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Black.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Bold.ttc",
)
_LATIN_PATHS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


class FontNotFoundError(RuntimeError):
    pass


def _fc_match(pattern: str) -> str | None:
    if shutil.which("fc-match") is None:
        return None
    try:
        out = subprocess.run(["fc-match", "-f", "%{file}", pattern], capture_output=True, text=True,
                             timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out or None


@functools.cache
def font_path(kind: str) -> str:
    """Path of the 'cjk' (province characters) or 'latin' (letters, digits) plate font."""
    known: tuple[str, ...]
    if kind == "cjk":
        known, pattern, pkg, must = _CJK_PATHS, "Noto Sans CJK SC:bold", "fonts-noto-cjk", "CJK"
    elif kind == "latin":
        known, pattern, pkg, must = _LATIN_PATHS, "DejaVu Sans Condensed:bold", "fonts-dejavu-core", "DejaVu"
    else:
        raise ValueError(f"font kind must be 'cjk' or 'latin', got {kind!r}")
    for p in known:
        if Path(p).is_file():
            return p
    found = _fc_match(pattern)
    if found and must in Path(found).name and Path(found).is_file():
        return found
    raise FontNotFoundError(
        f"no {must} font found (looked in {', '.join(known)} and fc-match {pattern!r}); "
        f"install the Debian package {pkg}"
    )


@functools.cache
def _font(kind: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_path(kind), size)


def is_cjk(ch: str) -> bool:
    return ord(ch) > 0x2E80


@functools.lru_cache(maxsize=512)
def glyph_mask(ch: str) -> np.ndarray:
    """Tight float32 [0,1] coverage mask of one character at ~200 px tall.

    Plate fonts are tall and narrow; callers stretch this tight mask into the spec
    character box, which approximates the GA 36 typeface well enough for OCR training.
    """
    kind = "cjk" if is_cjk(ch) else "latin"
    size = 220
    font = _font(kind, size)
    img = Image.new("L", (size * 2, size * 2), 0)
    ImageDraw.Draw(img).text((size // 2, size // 2), ch, font=font, fill=255)
    arr = np.asarray(img, np.float32) / 255.0
    ys, xs = np.nonzero(arr > 0.02)
    if len(xs) == 0:
        raise ValueError(f"font {font_path(kind)} has no glyph for {ch!r}")
    return np.ascontiguousarray(arr[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1])
