"""Size matching: the size a row is generated at, and the exact size it is stored at.

A row is stored at its source image's exact size (or ``--size`` / the model's default size for
prompts without a source). It is generated at the nearest size the model accepts: the same
aspect ratio, the longer side at most ``max_side`` (and the shorter side at least ``min_side``
when that does not break ``max_side``), both sides rounded to a multiple of ``multiple`` (8 for
Stable Diffusion), then resized to the stored size.
"""

from __future__ import annotations

from ...errors import ConfigError


def parse_size(text: str, *, key: str = "size") -> tuple[int, int]:
    """``"640x480"`` -> ``(640, 480)`` (width, height)."""
    try:
        w, h = (int(v) for v in str(text).lower().replace("*", "x").split("x"))
    except ValueError:
        raise ConfigError(f"{key}: expected WIDTHxHEIGHT such as 512x512; got {text!r}") from None
    if w <= 0 or h <= 0:
        raise ConfigError(f"{key}: expected positive width and height; got {text!r}")
    return w, h


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def generation_size(width: int, height: int, *, max_side: int, multiple: int = 8, min_side: int = 0) -> tuple[int, int]:
    """The (width, height) to generate a ``width`` x ``height`` image at.

    >>> generation_size(1024, 768, max_side=768)
    (768, 576)
    >>> generation_size(500, 333, max_side=768)
    (496, 336)
    >>> generation_size(32, 32, max_side=768, min_side=512)
    (512, 512)
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height: expected positive sizes; got {width}x{height}")
    scale = 1.0
    if min_side and min(width, height) < min_side:
        scale = min_side / min(width, height)
    if max(width, height) * scale > max_side:
        scale = max_side / max(width, height)
    gw, gh = _round_to(width * scale, multiple), _round_to(height * scale, multiple)
    # rounding up may cross max_side by less than one multiple: step back down
    limit = max(multiple, (max_side // multiple) * multiple)
    return min(gw, limit), min(gh, limit)


def resize_exact(image, width: int, height: int):
    """Resize to exactly ``width`` x ``height`` (Lanczos); returns ``image`` itself when it already fits."""
    if image.size == (width, height):
        return image
    from PIL import Image

    return image.resize((width, height), Image.Resampling.LANCZOS)
