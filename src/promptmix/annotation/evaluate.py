"""How good each annotator is on real, human-labelled images: its error on a split of the real dataset.

PromptMix trusts its annotators to label the generated images; this measures them where the truth is known.
``annotate: {evaluate_split: test}`` runs every annotator over that split of the real dataset after annotating,
writes ``RUN/annotations/real_eval.json`` and the dataset card shows the table. Counting: MAE and RMSE of the
count against the number of annotated heads; classification: top-1 accuracy against the label. Depth
annotators are not evaluated (their maps are at another resolution than the real depth; say so instead of
guessing an alignment).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .. import schema as S
from ..errors import InputError

EVAL_FILE = "real_eval.json"


def evaluate_on_real(run, specs: Sequence[str], split: str, *, batch_size: int = 8, device: Any = None,
                     dtype: Any = None, revision: str | None = None, class_names: Sequence[str] | None = None) -> dict:
    """``{name: {"split", "n", "mae", "rmse", "mean_count"}}`` (counting) or ``{..., "accuracy"}`` (classification)
    of every annotator in ``specs`` on ``split`` of ``RUN/real``; also written to ``RUN/annotations/real_eval.json``."""
    from ..builders.loading import load_real, task_of
    from ..utils.io import write_json_atomic
    from .annotators.registry import build_annotator, default_name, parse_spec

    splits = load_real(str(run.real))
    if split not in splits:
        raise InputError(f"annotate.evaluate_split: {split!r} is not a split of the real dataset {run.real} "
                         f"(it has {', '.join(sorted(splits))})")
    ds = splits[split]
    task = task_of(ds.features)
    if task == "depth":
        raise InputError("annotate.evaluate_split: depth annotators are not evaluated against the real depth maps "
                         "(their outputs are at another resolution); leave evaluate_split unset for depth runs")
    if task == "classification":
        truth = np.asarray(ds[S.LABEL])
    else:
        truth = np.asarray(ds[S.COUNT], dtype=np.float64)
    results: dict[str, dict] = {}
    for spec in specs:
        name = default_name(parse_spec(spec))
        ann = build_annotator(spec, name=name, class_names=class_names or None, device=device, dtype=dtype,
                              batch_size=batch_size, revision=revision)
        preds = []
        with ann:
            for start in range(0, len(ds), batch_size):
                images = ds[start:start + batch_size][S.IMAGE]
                preds += ann.annotate(images)
        if task == "classification":
            got = np.asarray([p.get("label", -1) for p in preds])
            results[name] = {"split": split, "n": len(ds), "accuracy": float(np.mean(got == truth))}
        else:
            err = np.asarray([p["count"] for p in preds], dtype=np.float64) - truth
            results[name] = {"split": split, "n": len(ds), "mae": float(np.abs(err).mean()),
                             "rmse": float(math.sqrt(np.mean(err ** 2))), "mean_count": float(truth.mean())}
    write_json_atomic(run.annotations / EVAL_FILE, {"task": task, "split": split, "annotators": results})
    return results


def read_real_eval(run) -> dict | None:
    """What :func:`evaluate_on_real` wrote for ``run``, or None."""
    import json

    path = run.annotations / EVAL_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def eval_lines(record: dict) -> list[str]:
    """One line per annotator: its error on the real split."""
    out = []
    for name, r in record.get("annotators", {}).items():
        if "mae" in r:
            out.append(f"annotator {name} on the real {r['split']} split ({r['n']} images, mean count "
                       f"{r['mean_count']:.1f}): MAE {r['mae']:.2f}, RMSE {r['rmse']:.2f}")
        else:
            out.append(f"annotator {name} on the real {r['split']} split ({r['n']} images): "
                       f"top-1 {100 * r['accuracy']:.1f}%")
    return out
