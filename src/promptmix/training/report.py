"""``promptmix report RUN_DIR...``: training runs side by side, and their training curves in a PNG.

Each ``RUN_DIR`` is an ``--output-dir`` of a training script (it holds ``metrics.json``). The table
has one row per run: model, mixing, r_mix, chosen learning rate, best epoch, then every ``test/*``
and ``validation/*`` metric. The figure plots, per run, the training loss and the validation
metric used for model selection against the epoch (the chosen learning rate's history).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from ..errors import InputError
from ..utils.io import atomic_path

_INFO_COLUMNS = (("model", "model"), ("mixing", "mixing"), ("r_mix", "r_mix"), ("lr", "chosen_lr"),
                 ("epoch", "best_epoch"))
_SKIP = ("num_images", "num_samples")


def load_run(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        raise InputError(f"{run_dir}: no metrics.json; expected the --output-dir of a finished training run")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def run_names(run_dirs: Sequence[str | Path]) -> list[str]:
    """Short unique names: the folder names, with parents added where they clash."""
    paths = [Path(p).resolve() for p in run_dirs]
    depth = 1
    while True:
        names = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(names)) == len(names) or depth > max(len(p.parts) for p in paths):
            return names
        depth += 1


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.4f}"
    return str(value)


def metric_columns(runs: Sequence[dict]) -> list[str]:
    keys: list[str] = []
    for prefix in ("test/", "validation/"):
        for run in runs:
            for k in run:
                if k.startswith(prefix) and not k.endswith(_SKIP) and k not in keys:
                    keys.append(k)
    return keys


def report_table(run_dirs: Sequence[str | Path]) -> str:
    """The side-by-side table of the runs (plain text, aligned columns)."""
    runs = [load_run(d) for d in run_dirs]
    names = run_names(run_dirs)
    metrics = metric_columns(runs)
    header = ["run", *[h for h, _ in _INFO_COLUMNS], *metrics]
    rows = [[name, *[_fmt(run.get(k)) for _, k in _INFO_COLUMNS], *[_fmt(run.get(k)) for k in metrics]]
            for name, run in zip(names, runs)]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot_curves(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Write a PNG with the training loss and the selection metric of every run against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [load_run(d) for d in run_dirs]
    names = run_names(run_dirs)
    primaries = {r.get("primary_metric", "mae") for r in runs}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, run in zip(names, runs):
        hist = run.get("history") or []
        epochs = [h["epoch"] for h in hist]
        axes[0].plot(epochs, [h.get("train_loss", math.nan) for h in hist], marker=".", label=name)
        key = f"validation/{run.get('primary_metric', 'mae')}"
        pts = [(h["epoch"], h[key]) for h in hist if key in h]
        if pts:
            axes[1].plot(*zip(*pts), marker=".", label=name)
    axes[0].set(title="training loss", xlabel="epoch", ylabel="loss")
    if all(h.get("train_loss", 1) > 0 for r in runs for h in r.get("history") or []):
        axes[0].set_yscale("log")
    axes[1].set(title="validation " + " / ".join(sorted(primaries)), xlabel="epoch")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out
