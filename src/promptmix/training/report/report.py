"""``promptmix report RUN_DIR...``: training runs against their real-only baseline (PromptMix Tables I-II,
MVC Table 5), in text, Markdown and two PNGs.

Each ``RUN_DIR`` is an ``--output-dir`` of a training script (it holds ``metrics.json``). Two tables:

- the runs: model, mixing, r_mix, chosen learning rate, best epoch and the baseline each is compared with;
- the comparison: one row per metric and run, every ``test/*`` then every ``validation/*`` metric, with the
  run's value, its *change* ``run - baseline`` (signed, as MVC Table 5 prints ``95.4 (-0.7)``), the change in
  percent of the baseline, and whether that is ``better`` or ``worse`` for this metric: lower is better for
  errors (``mae``, ``rmse``, ``abs_rel``: the ``↓`` after the name), higher for ``top1``, ``top5`` and
  ``delta1..3`` (``↑``). So a PromptMix run that brings MAE from 11.63 to 8.57 reads
  ``-3.0600  -26.31%  better``, and a classifier whose top-1 drops from 0.961 to 0.954 reads ``worse``.

The baseline: with ``baseline`` given (a run's name or folder), every run is compared with it. Otherwise each
run is compared with the real-only run (``mixing: none``) of the same model (PromptMix's configs train a
baseline per network), or with the only real-only run when no run of its model is real-only.

:func:`write_report` writes ``OUT/report.md`` (both tables and the figures), ``OUT/training_curves.png``
(training loss and validation metric per epoch), ``OUT/test_metric.png`` (a bar per run of the test metric
used for model selection, coloured better / worse than its baseline) and ``OUT/comparison.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from ...errors import InputError
from ...utils.io import atomic_path, write_json_atomic, write_text_atomic

_INFO_COLUMNS = (("model", "model"), ("mixing", "mixing"), ("r_mix", "r_mix"), ("lr", "chosen_lr"),
                 ("epoch", "best_epoch"))
_SKIP = ("num_images", "num_samples")
#: metric name (after ``test/`` or ``validation/``) -> greater is better
METRIC_DIRECTION: dict[str, bool] = {
    "mae": False, "rmse": False, "abs_rel": False, "mse": False, "loss": False,
    "top1": True, "top5": True, "accuracy": True, "delta1": True, "delta2": True, "delta3": True,
}
REPORT_FILE = "report.md"
CURVES_FILE = "training_curves.png"
BARS_FILE = "test_metric.png"
COMPARISON_FILE = "comparison.json"
BETTER, WORSE, SAME = "better", "worse", "same"


def load_run(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        raise InputError(f"{run_dir}: no metrics.json; expected the --output-dir of a finished training run")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object of metrics; got {type(data).__name__}")
    return data


def run_names(run_dirs: Sequence[str | Path]) -> list[str]:
    """Short unique names: the folder names, with parents added where they clash."""
    paths = [Path(p).resolve() for p in run_dirs]
    depth = 1
    while True:
        names = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(names)) == len(names) or depth > max(len(p.parts) for p in paths):
            return names
        depth += 1


def greater_is_better(metric: str, run: Mapping[str, Any] | None = None) -> bool | None:
    """Direction of ``metric`` (``test/mae`` or ``mae``): True if higher is better, False if lower, None if unknown.

    Unknown names fall back to ``greater_is_better`` in ``run``'s metrics.json when it is the run's primary metric.
    """
    name = metric.split("/", 1)[-1]
    if name in METRIC_DIRECTION:
        return METRIC_DIRECTION[name]
    if run is not None and run.get("primary_metric") == name and isinstance(run.get("greater_is_better"), bool):
        return run["greater_is_better"]
    return None


def metric_label(metric: str, run: Mapping[str, Any] | None = None) -> str:
    """``test/mae ↓`` / ``test/top1 ↑`` (no arrow when the direction is unknown)."""
    up = greater_is_better(metric, run)
    return metric if up is None else f"{metric} {'↑' if up else '↓'}"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.4f}"
    return str(value)


def _signed(value: float | None, suffix: str = "", digits: int = 4) -> str:
    if value is None:
        return "-"
    if value == 0:
        return f"{0:.{digits}f}{suffix}"
    if (abs(value) < 10 ** -digits or abs(value) >= 1e5):
        return f"{value:+.2e}{suffix}"
    return f"{value:+.{digits}f}{suffix}"


def metric_columns(runs: Sequence[dict]) -> list[str]:
    """Every ``test/*`` then every ``validation/*`` metric found in the runs (counts left out), in first-seen order."""
    keys: list[str] = []
    for prefix in ("test/", "validation/"):
        for run in runs:
            for k, v in run.items():
                if k.startswith(prefix) and not k.endswith(_SKIP) and k not in keys and _is_number(v):
                    keys.append(k)
    return keys


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- the comparison --------------------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    """One training run: its name in the report, its folder and its ``metrics.json``."""

    name: str
    path: Path
    metrics: dict[str, Any]

    @property
    def is_baseline_kind(self) -> bool:
        return self.metrics.get("mixing") == "none"


@dataclasses.dataclass
class Change:
    """One cell of the comparison: ``metric`` of ``run`` against ``baseline`` (None: no baseline)."""

    run: str
    metric: str
    value: float | None
    baseline: str | None
    baseline_value: float | None
    change: float | None  # value - baseline_value
    relative: float | None  # change in percent of |baseline_value|
    verdict: str | None  # better / worse / same; None when there is no change or the direction is unknown


@dataclasses.dataclass
class Comparison:
    """Runs, the baseline of each, and every metric's change against it (:func:`compare_runs`)."""

    runs: list[Run]
    baselines: dict[str, str | None]  # run name -> its baseline's name (None: it is one, or there is none)
    metrics: list[str]
    changes: list[Change]
    note: str = ""

    def run(self, name: str) -> Run:
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(name)

    def change(self, run: str, metric: str) -> Change:
        for c in self.changes:
            if c.run == run and c.metric == metric:
                return c
        raise KeyError((run, metric))

    def primary_metric(self, run: Run) -> str | None:
        key = f"test/{run.metrics.get('primary_metric', '')}"
        return key if key in self.metrics else (next((m for m in self.metrics if m.startswith("test/")), None))

    # -- tables ------------------------------------------------------------------------------------------
    def _info_rows(self) -> tuple[list[str], list[list[str]]]:
        header = ["run", *[h for h, _ in _INFO_COLUMNS], "baseline"]
        rows = [[r.name, *[_fmt(r.metrics.get(k)) for _, k in _INFO_COLUMNS],
                 self.baselines.get(r.name) or ("(baseline)" if self._is_a_baseline(r.name) else "-")]
                for r in self.runs]
        return header, rows

    def _is_a_baseline(self, name: str) -> bool:
        return name in set(self.baselines.values())

    def _change_rows(self) -> tuple[list[str], list[list[str]]]:
        header = ["metric", "run", "value", "change", "change %", "vs baseline"]
        rows = []
        for c in self.changes:
            run = self.run(c.run)
            if c.baseline is None:
                cells = ["baseline" if self._is_a_baseline(c.run) else "-", "", ""]
            else:
                cells = [_signed(c.change), _signed(c.relative, "%", 2), c.verdict or ""]
            rows.append([metric_label(c.metric, run.metrics), c.run, _fmt(c.value), *cells])
        return header, rows

    def table(self) -> str:
        """Both tables as aligned plain text (what ``promptmix report`` prints)."""
        parts = [_text_table(*self._info_rows()), "", _text_table(*self._change_rows())]
        parts.append("")
        parts.append("change = run - baseline; ↓ lower is better, ↑ higher is better")
        if self.note:
            parts.append(self.note)
        return "\n".join(parts)

    def markdown(self, figures: Sequence[tuple[str, str]] = ()) -> str:
        """``report.md``: both tables as Markdown, the sign convention, and the figures (title, file name)."""
        lines = ["# Training runs against the real-only baseline", "",
                 "Change = run − baseline, in the metric's units and in % of the baseline; "
                 "↓ lower is better (errors), ↑ higher is better (accuracy, δ thresholds). "
                 "Each run is compared with the baseline named in the first table.", ""]
        if self.note:
            lines += [self.note, ""]
        lines += ["## Runs", "", _markdown_table(*self._info_rows()), "",
                  "## Metrics", "", _markdown_table(*self._change_rows()), ""]
        for title, name in figures:
            lines += [f"## {title}", "", f"![{title}]({name})", ""]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"runs": [{"name": r.name, "path": str(r.path), "baseline": self.baselines.get(r.name)}
                         for r in self.runs],
                "metrics": self.metrics, "changes": [dataclasses.asdict(c) for c in self.changes],
                "note": self.note}


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def load_runs(run_dirs: Sequence[str | Path], names: Sequence[str] | None = None) -> list[Run]:
    """The runs of ``run_dirs`` (each needs a metrics.json), named ``names`` or after their folders."""
    if not run_dirs:
        raise InputError("report: expected at least one training run folder; got none")
    if names is not None and len(names) != len(run_dirs):
        raise InputError(f"report: {len(names)} names for {len(run_dirs)} run folders")
    names = list(names) if names is not None else run_names(run_dirs)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(f"report: run name {dup!r} occurs twice")
    return [Run(name, Path(d), load_run(d)) for name, d in zip(names, run_dirs)]


def pick_baselines(runs: Sequence[Run], baseline: str | Path | None = None) -> tuple[dict[str, str | None], str]:
    """``{run name: name of the run it is compared with}`` and a note for the report.

    ``baseline``: a run's name or folder: every other run is compared with it. None: each run that mixes in
    fake data is compared with the real-only run (``mixing: none``) of the same model, else with the only
    real-only run; real-only runs are baselines themselves.
    """
    if baseline is not None:
        chosen = _find_run(runs, baseline)
        return {r.name: (None if r.name == chosen.name else chosen.name) for r in runs}, ""
    real_only = [r for r in runs if r.is_baseline_kind]
    out: dict[str, str | None] = {}
    missing = []
    for r in runs:
        if r.is_baseline_kind:
            out[r.name] = None
            continue
        same_model = [b for b in real_only if b.metrics.get("model") == r.metrics.get("model")]
        pick = same_model[0] if same_model else (real_only[0] if len(real_only) == 1 else None)
        out[r.name] = pick.name if pick else None
        if pick is None:
            missing.append(r.name)
    note = ""
    if missing:
        have = ", ".join(b.name for b in real_only) or "none"
        note = (f"no baseline for {', '.join(missing)}: no real-only run (mixing: none) of the same model "
                f"(real-only runs: {have}); pass --baseline NAME to compare with one run")
    return out, note


def _find_run(runs: Sequence[Run], ref: str | Path) -> Run:
    for r in runs:
        if r.name == str(ref):
            return r
    path = Path(ref).resolve()
    for r in runs:
        if r.path.resolve() == path:
            return r
    raise InputError(f"--baseline: {ref!r} is not one of the runs ({', '.join(r.name for r in runs)}) nor one of "
                     "their folders")


def compare_runs(run_dirs: Sequence[str | Path], *, baseline: str | Path | None = None,
                 names: Sequence[str] | None = None) -> Comparison:
    """Load the runs and compare every metric with each run's baseline (see :func:`pick_baselines`).

    A ``baseline`` folder that is not among ``run_dirs`` is added to the runs (first).
    """
    run_dirs = list(run_dirs)
    if baseline is not None and names is None:
        known = {str(Path(d).resolve()) for d in run_dirs}
        as_path = Path(baseline)
        if (as_path / "metrics.json").is_file() and str(as_path.resolve()) not in known \
                and str(baseline) not in run_names(run_dirs):
            run_dirs.insert(0, as_path)
    runs = load_runs(run_dirs, names)
    baselines, note = pick_baselines(runs, baseline)
    metrics = metric_columns([r.metrics for r in runs])
    by_name = {r.name: r for r in runs}
    changes = []
    for metric in metrics:
        for r in runs:
            value = r.metrics.get(metric)
            value = float(value) if _is_number(value) else None
            base_name = baselines[r.name]
            base_value = by_name[base_name].metrics.get(metric) if base_name else None
            base_value = float(base_value) if _is_number(base_value) else None
            change = relative = verdict = None
            if value is not None and base_value is not None:
                change = value - base_value
                relative = change / abs(base_value) * 100 if base_value != 0 else None
                up = greater_is_better(metric, r.metrics)
                if change == 0:
                    verdict = SAME
                elif up is not None:
                    verdict = BETTER if (change > 0) == up else WORSE
            changes.append(Change(r.name, metric, value, base_name, base_value, change, relative, verdict))
    return Comparison(runs, baselines, metrics, changes, note)


def report_table(run_dirs: Sequence[str | Path], *, baseline: str | Path | None = None,
                 names: Sequence[str] | None = None) -> str:
    """The plain-text tables of :func:`compare_runs` (what ``promptmix report`` prints)."""
    return compare_runs(run_dirs, baseline=baseline, names=names).table()


@dataclasses.dataclass
class ReportFiles:
    comparison: Comparison
    report: Path
    curves: Path
    bars: Path
    json: Path


def write_report(run_dirs: Sequence[str | Path], out_dir: str | Path, *, baseline: str | Path | None = None,
                 names: Sequence[str] | None = None, force: bool = False) -> ReportFiles:
    """Compare the runs and write ``report.md``, ``training_curves.png``, ``test_metric.png`` and
    ``comparison.json`` into ``out_dir`` (each file atomically; other files there are left alone). ``out_dir``
    is never a training run's folder nor around one; a non-empty folder the report did not write needs ``force``."""
    from ...utils.outputs import guard_output, write_marker

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} is a file; expected a folder for {REPORT_FILE} and the figures")
    guard_output(out, "report", inputs=run_dirs, force=force,
                 ours=lambda folder: (folder / REPORT_FILE).is_file() and (folder / COMPARISON_FILE).is_file())
    comparison = compare_runs(run_dirs, baseline=baseline, names=names)
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "report")
    curves = plot_curves([r.path for r in comparison.runs], out / CURVES_FILE,
                         names=[r.name for r in comparison.runs])
    bars = plot_test_metric(comparison, out / BARS_FILE)
    figures = [("Test metric per run", BARS_FILE), ("Training curves", CURVES_FILE)]
    report = write_text_atomic(out / REPORT_FILE, comparison.markdown(figures))
    data = write_json_atomic(out / COMPARISON_FILE, comparison.to_json())
    return ReportFiles(comparison, report, curves, bars, data)


# -- figures ---------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str | Path) -> Path:
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _pyplot().close(fig)
    return out


def plot_curves(run_dirs: Sequence[str | Path], out: str | Path, *, names: Sequence[str] | None = None) -> Path:
    """Write a PNG with the training loss and the selection metric of every run against the epoch."""
    return _save(curves_figure(run_dirs, names=names), out)


def curves_figure(run_dirs: Sequence[str | Path], *, names: Sequence[str] | None = None):
    """The figure of :func:`plot_curves`: training loss (log scale when positive, ticks as plain numbers) and the
    selection metric per epoch."""
    from matplotlib.ticker import LogFormatter, MaxNLocator

    plt = _pyplot()
    runs = [load_run(d) for d in run_dirs]
    names = list(names) if names is not None else run_names(run_dirs)
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
        # plain numbers (0.3, 2, 10) rather than matplotlib's default 2x10^0 on a range under a decade
        axes[0].yaxis.set_major_formatter(LogFormatter())
        axes[0].yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))
    axes[1].set(title="validation " + " / ".join(metric_label(p) for p in sorted(primaries)), xlabel="epoch")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


_COLOURS = {BETTER: "#2ca02c", WORSE: "#d62728", SAME: "#7f7f7f", None: "#1f77b4", "baseline": "#7f7f7f"}


def plot_test_metric(comparison: Comparison, out: str | Path) -> Path:
    """A bar per run of its test metric used for model selection (one panel per metric): grey for
    baselines, green / red for runs better / worse than their baseline, labelled with the change in %."""
    plt = _pyplot()
    panels: dict[str, list[Run]] = {}
    for r in comparison.runs:
        key = comparison.primary_metric(r)
        if key is not None:
            panels.setdefault(key, []).append(r)
    if not panels:
        raise InputError("report: the runs have no test/* metric to plot")
    fig, axes = plt.subplots(1, len(panels), figsize=(max(4.0, 1.2 * max(map(len, panels.values())) + 2)
                                                      * len(panels), 3.8), squeeze=False)
    for ax, (metric, runs) in zip(axes[0], panels.items()):
        values, colours, labels = [], [], []
        for r in runs:
            c = comparison.change(r.name, metric)
            values.append(c.value if c.value is not None else math.nan)
            if c.baseline is None:
                colours.append(_COLOURS["baseline"])
                labels.append("baseline" if comparison._is_a_baseline(r.name) else "")
            else:
                colours.append(_COLOURS[c.verdict])
                shown = _signed(c.relative, "%", 1) if c.relative is not None else _signed(c.change)
                labels.append(f"{shown} ({c.verdict})" if c.verdict else shown)
        xs = range(len(runs))
        bars = ax.bar(xs, values, color=colours)
        for bar, value, label in zip(bars, values, labels):
            text = f"{_fmt(value)}\n{label}" if label else _fmt(value)
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=8, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(list(xs), [r.name for r in runs], rotation=20 if len(runs) > 3 else 0, ha="right"
                      if len(runs) > 3 else "center", fontsize=8)
        ax.set_title(metric_label(metric, runs[0].metrics))
        ax.margins(y=0.2)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, out)
