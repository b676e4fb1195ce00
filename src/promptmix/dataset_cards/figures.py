"""The PNG figures of a dataset card: sample grid, quality scores, target distribution, prompt lengths.

Every function takes plain values (lists/arrays, PIL images) so it can be tested without a run
folder; :func:`promptmix.dataset_cards.card.make_card_figures` extracts them from a run.
Figures are deterministic: matplotlib's Agg backend, fixed sizes and fonts, and no timestamp or
software name in the PNG metadata, so re-rendering the same data gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import io
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..utils.io import write_bytes_atomic

DPI = 100
REAL_COLOR = "#1f77b4"
FAKE_COLOR = "#ff7f0e"
DROPPED_COLOR = "#bbbbbb"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "promptmix", "font.size": 9})
    return plt


def figure_png_bytes(fig) -> bytes:
    """PNG bytes of a matplotlib figure, without metadata that changes between runs; closes the figure."""
    plt = _pyplot()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    finally:
        plt.close(fig)
    return buf.getvalue()


def image_png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def save_png(fig_or_image, path: str | Path) -> Path:
    """Write a matplotlib figure or a PIL image as a PNG file, atomically."""
    if isinstance(fig_or_image, Image.Image):
        data = image_png_bytes(fig_or_image)
    else:
        data = figure_png_bytes(fig_or_image)
    return write_bytes_atomic(path, data)


# -- quality scores --------------------------------------------------------------------------------------------
def quality_histogram(scores: Sequence[float | None], kept: Sequence[bool], threshold: float | None,
                      keep_percent: float | None = None):
    """Histogram of quality scores (lower = annotators agree more), kept rows and dropped rows stacked.

    The threshold ``q`` (largest score kept) is drawn as a dashed line. Rows without a score
    (single annotator, failed annotation) are left out and counted in the title.
    """
    plt = _pyplot()
    pairs = [(float(s), bool(k)) for s, k in zip(scores, kept) if s is not None and np.isfinite(s)]
    missing = len(scores) - len(pairs)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    if pairs:
        values = np.array([p[0] for p in pairs])
        lo, hi = float(values.min()), float(values.max())
        if hi <= lo:
            hi = lo + 1e-3
        bins = np.linspace(lo, hi, 31)
        kept_v = [v for v, k in pairs if k]
        drop_v = [v for v, k in pairs if not k]
        ax.hist([kept_v, drop_v], bins=bins, stacked=True, color=[FAKE_COLOR, DROPPED_COLOR],
                label=[f"kept ({len(kept_v)})", f"dropped ({len(drop_v)})"])
    if threshold is not None:
        label = f"threshold q = {threshold:.4g}"
        if keep_percent is not None:
            label += f" (keep lowest {keep_percent:g} %)"
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2, label=label)
    ax.set_xlabel("quality score (max pairwise disagreement / max magnitude; lower is better)")
    ax.set_ylabel("generated images")
    title = "Quality scores of the generated images"
    if missing:
        title += f" ({missing} without a score)"
    ax.set_title(title)
    ax.yaxis.get_major_locator().set_params(integer=True)
    _legend_headroom(ax)
    ax.legend(loc="best", framealpha=0.9)
    fig.tight_layout()
    return fig


def _legend_headroom(ax, factor: float = 1.5) -> None:
    """Raise the y limit so a legend of up to three lines fits above the tallest bar instead of covering it."""
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, lo + (hi - lo) * factor)


# -- target distribution ---------------------------------------------------------------------------------------
def _shared_bins(*arrays: np.ndarray, n: int = 30, integer: bool = False) -> np.ndarray:
    values = np.concatenate([a for a in arrays if a.size]) if any(a.size for a in arrays) else np.zeros(1)
    lo, hi = float(np.min(values)), float(np.max(values))
    if integer:
        lo, hi = np.floor(lo), np.ceil(hi)
        step = max(1.0, np.ceil((hi - lo + 1) / n))
        return np.arange(lo - 0.5, hi + step + 0.5, step)
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, n + 1)


def _fraction_hist(ax, values: np.ndarray, bins, **kwargs) -> None:
    if values.size:
        ax.hist(values, bins=bins, weights=np.full(values.size, 1.0 / values.size), **kwargs)


def count_histogram(real_counts: Sequence[float], fake_counts: Sequence[float],
                    fake_all_counts: Sequence[float] | None = None):
    """Counting: people per image, real (train split) vs fake (kept rows; all rows as an outline)."""
    plt = _pyplot()
    real = np.asarray(list(real_counts), dtype=float)
    fake = np.asarray(list(fake_counts), dtype=float)
    fake_all = np.asarray(list(fake_all_counts or []), dtype=float)
    bins = _shared_bins(real, fake, fake_all)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    _fraction_hist(ax, real, bins, alpha=0.6, color=REAL_COLOR, label=f"real ({real.size} images)")
    _fraction_hist(ax, fake, bins, alpha=0.6, color=FAKE_COLOR, label=f"fake, kept ({fake.size})")
    if fake_all.size and fake_all.size != fake.size:
        _fraction_hist(ax, fake_all, bins, histtype="step", color="black", linewidth=1.0,
                       label=f"fake, all ({fake_all.size})")
    ax.set_xlabel("count per image (fake: annotator estimate)")
    ax.set_ylabel("fraction of images")
    ax.set_title("Count distribution, real vs fake")
    _legend_headroom(ax)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def depth_histogram(real_values: np.ndarray, fake_values: np.ndarray):
    """Depth: per-pixel depth values (metres), real vs fake kept rows, as fractions of pixels."""
    plt = _pyplot()
    real = np.asarray(real_values, dtype=float).ravel()
    fake = np.asarray(fake_values, dtype=float).ravel()
    real, fake = real[np.isfinite(real)], fake[np.isfinite(fake)]
    bins = _shared_bins(real, fake, n=40)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    _fraction_hist(ax, real, bins, alpha=0.6, color=REAL_COLOR, label="real")
    _fraction_hist(ax, fake, bins, alpha=0.6, color=FAKE_COLOR, label="fake, kept")
    ax.set_xlabel("depth (m; fake: annotator estimate)")
    ax.set_ylabel("fraction of pixels")
    ax.set_title("Depth value distribution, real vs fake (sampled pixels)")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def label_bar_chart(class_names: Sequence[str], real_labels: Sequence[int], fake_labels: Sequence[int]):
    """Classification: images per class, real (train split) vs fake (kept rows)."""
    plt = _pyplot()
    names = list(class_names)
    n = len(names)
    real = np.bincount(np.asarray([l for l in real_labels if l is not None and l >= 0], dtype=int), minlength=n)[:n]
    fake = np.bincount(np.asarray([l for l in fake_labels if l is not None and l >= 0], dtype=int), minlength=n)[:n]
    width = max(7.0, min(16.0, 0.45 * n + 2))
    fig, ax = plt.subplots(figsize=(width, 3.4))
    x = np.arange(n)
    ax.bar(x - 0.2, real, width=0.4, color=REAL_COLOR, label=f"real ({int(real.sum())})")
    ax.bar(x + 0.2, fake, width=0.4, color=FAKE_COLOR, label=f"fake, kept ({int(fake.sum())})")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=45 if n > 8 else 0, ha="right" if n > 8 else "center")
    ax.set_ylabel("images")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Images per class, real vs fake")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


# -- prompts --------------------------------------------------------------------------------------------------
def prompt_length_histogram(prompts: Sequence[str]):
    """Words per prompt over the distinct prompts that made the dataset."""
    plt = _pyplot()
    lengths = np.asarray([len(p.split()) for p in prompts], dtype=float)
    bins = _shared_bins(lengths, integer=True)
    fig, ax = plt.subplots(figsize=(7, 2.8))
    if lengths.size:
        ax.hist(lengths, bins=bins, color=REAL_COLOR)
        ax.axvline(float(lengths.mean()), color="black", linestyle="--", linewidth=1.0,
                   label=f"mean {lengths.mean():.1f} words")
        ax.legend(frameon=False)
    ax.set_xlabel("words per prompt")
    ax.set_ylabel("prompts")
    ax.yaxis.get_major_locator().set_params(integer=True)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # words are whole: no tick at 11.6
    if lengths.size:
        lo, hi = float(lengths.min()), float(lengths.max())
        if hi - lo < 4:  # one or a few lengths: show them among their neighbours, not as a single wide bar
            mid = (lo + hi) / 2
            ax.set_xlim(mid - 3, mid + 3)
    ax.set_title(f"Prompt lengths ({lengths.size} distinct prompts)")
    fig.tight_layout()
    return fig


# -- sample grid ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class GridCell:
    image: Image.Image | None  # None draws an empty, labelled cell
    caption: str


@dataclasses.dataclass
class GridRow:
    real: GridCell
    fakes: list[GridCell]


def _font(size: int) -> ImageFont.ImageFont:
    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return ImageFont.truetype(str(path), size)
    except Exception:  # matplotlib without its fonts: Pillow's bundled default
        return ImageFont.load_default(size)


def _fit(image: Image.Image, box: tuple[int, int]) -> Image.Image:
    image = image.convert("RGB")
    scale = min(box[0] / image.width, box[1] / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 3 else Image.Resampling.LANCZOS
    return image.resize(size, resample)


def sample_grid(rows: Sequence[GridRow], *, cell: tuple[int, int] = (200, 150), caption_lines: int = 4,
                headers: tuple[str, str] = ("real image", "fake images generated from its prompts")) -> Image.Image:
    """A grid with one real image per row (left) beside fakes made from its prompts, captions underneath."""
    font, bold = _font(11), _font(13)
    n_fakes = max([len(r.fakes) for r in rows] + [1])
    pad, line_h, header_h = 8, 14, 24
    cap_h = caption_lines * line_h + 4
    col_w, row_h = cell[0] + pad, cell[1] + cap_h + pad
    sep = 12  # gap between the real column and the fakes
    width = pad + col_w * (1 + n_fakes) + sep
    height = header_h + pad + row_h * max(1, len(rows))
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 5), headers[0], fill="black", font=bold)
    draw.text((pad + col_w + sep, 5), headers[1], fill="black", font=bold)
    chars = max(10, cell[0] // 6)
    for r, row in enumerate(rows):
        y = header_h + pad + r * row_h
        for c, item in enumerate([row.real] + list(row.fakes)):
            x = pad + c * col_w + (sep if c > 0 else 0)
            draw.rectangle([x - 1, y - 1, x + cell[0], y + cell[1]], outline="#dddddd")
            if item.image is not None:
                thumb = _fit(item.image, cell)
                canvas.paste(thumb, (x + (cell[0] - thumb.width) // 2, y + (cell[1] - thumb.height) // 2))
            lines = textwrap.wrap(item.caption, width=chars) or [""]
            if len(lines) > caption_lines:
                lines = lines[:caption_lines]
                lines[-1] = lines[-1][: max(0, chars - 3)] + "..."
            for i, line in enumerate(lines):
                draw.text((x, y + cell[1] + 3 + i * line_h), line, fill="#222222", font=font)
    return canvas
