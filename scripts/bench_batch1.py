#!/usr/bin/env python
"""Benchmark: ResCSRNet trained at batch size 1 against batch size 8, on a procedural crowd set.

At batch size 1 (the paper's setting for ShanghaiTech A and UCF-QNRF) BatchNorm in training mode
normalises each image alone: the network optimised is not the one evaluated and training collapses.
``TrainConfig.bn`` (``promptmix.models.norm``) freezes BatchNorm there by default (``auto``). Three runs of
the real trainer (``promptmix.training.train.trainer.train``) on the same data, lr 1e-4, AdamW, x0.99 per
epoch, random initialisation, best validation epoch tested:

- ours: batch 1 with the default (``bn: auto`` -> frozen);
- baseline: batch 8 (``bn: auto`` -> train), the setting the paper's batch-1 runs should match;
- the old behaviour, batch 1 with ``bn: train``, for comparison.

Rows: test MAE of each batch-1 run against batch 8 (ratio = batch-8 MAE / batch-1 MAE; goal: batch 1
within 25 % of batch 8, ratio >= 0.8), plus the mean predictor's MAE (the train mean for every image).
The crowd set is ``promptmix.testing.synthetic`` (bright dots on a gradient; 40 train, 10 validation,
20 test images of 96 x 128 px, 5-99 heads). Threads are pinned (``--threads``, default 2).

    python scripts/bench_batch1.py            # 40 epochs each, about 10 min on 2 CPU cores
    python scripts/bench_batch1.py --quick    # 10 epochs, smaller set
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

GOAL = 0.8  # batch-1 MAE at most 1.25 x batch-8 MAE


def _train(real: Path, out: Path, *, batch_size: int, bn: str, epochs: int, seed: int) -> dict:
    from promptmix.training.train.config import TrainConfig
    from promptmix.training.train.trainer import train

    config = TrainConfig(task="counting", real=str(real), model="rescsrnet", mixing="none", epochs=epochs, lr=1e-4,
                         batch_size=batch_size, bn=bn, seed=seed, output_dir=str(out), save_every=10_000,
                         report_to="none", cpu=True)
    t0 = time.perf_counter()
    metrics = train(config)
    return {"mae": metrics["test/mae"], "val_mae": metrics["validation/mae"], "best_epoch": metrics["best_epoch"],
            "bn": config.bn_mode, "seconds": time.perf_counter() - t0}


def _mean_predictor_mae(real: Path) -> float:
    from promptmix import schema as S
    from promptmix.builders.loading import load_real

    splits = load_real(str(real))
    mean = sum(splits["train"][S.COUNT]) / len(splits["train"])
    test = splits["test"][S.COUNT]
    return sum(abs(c - mean) for c in test) / len(test)


def measure(*, n_train: int, n_test: int, epochs: int, size: tuple[int, int] = (96, 128), seed: int = 42,
            threads: int = 2, workdir: str | Path | None = None) -> tuple[list[dict], str]:
    import torch

    from promptmix.testing.synthetic import write_real_dataset

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        real = write_real_dataset(tmp / "real", "counting", size=size, seed=seed, count_range=(5, 100),
                                  sizes={"train": n_train, "validation": max(4, n_train // 4), "test": n_test})
        mean_mae = _mean_predictor_mae(real)
        runs = {name: _train(real, tmp / name, batch_size=b, bn=bn, epochs=epochs, seed=seed)
                for name, b, bn in (("b8", 8, "auto"), ("b1", 1, "auto"), ("b1-train", 1, "train"))}
    b8 = runs["b8"]["mae"]
    rows = []
    for key, label in (("b1", "bn auto -> frozen (new default)"), ("b1-train", "bn train (old behaviour)")):
        r = runs[key]
        rows.append({"name": f"ResCSRNet batch 1, {label} vs batch 8: test MAE ({epochs} epochs)",
                     "ours": r["mae"], "baseline": b8, "unit": "MAE", "ratio": b8 / r["mae"] if r["mae"] else None,
                     "goal": f">= {GOAL}x (batch 1 within 25 % of batch 8)" if key == "b1" else "(comparison)",
                     "ok": r["mae"] <= b8 / GOAL if key == "b1" else None})
    rows.append({"name": "mean predictor vs batch 8: test MAE", "ours": mean_mae, "baseline": b8, "unit": "MAE",
                 "ratio": b8 / mean_mae, "goal": "(reference)", "ok": None})
    lines = [f"procedural crowds: {n_train} train / {n_test} test, {size[0]}x{size[1]} px, 5-99 heads, lr 1e-4, "
             f"{epochs} epochs, {threads} threads"]
    for name, r in runs.items():
        lines.append(f"{name:9s} bn={r['bn']:6s} test MAE {r['mae']:7.2f}  best val MAE {r['val_mae']:7.2f} "
                     f"(epoch {r['best_epoch']})  {r['seconds']:.0f} s")
    lines.append(f"mean predictor test MAE {mean_mae:.2f}")
    lines.append(f"batch 1 (frozen) / batch 8 MAE: {runs['b1']['mae'] / b8:.2f} (goal <= 1.25); "
                 f"batch 1 (bn train) / batch 8: {runs['b1-train']['mae'] / b8:.2f}")
    return rows, "\n".join(lines)


def run(quick: bool = False) -> list[dict]:
    """For ``scripts/bench.py``."""
    if quick:
        rows, text = measure(n_train=16, n_test=8, epochs=10)
    else:
        rows, text = measure(n_train=40, n_test=20, epochs=40)
    rows[0]["output"] = text
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16 train / 8 test images, 10 epochs")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("PROMPTMIX_NO_PROGRESS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    n_train, n_test, epochs = (16, 8, 10) if args.quick else (40, 20, 40)
    _, text = measure(n_train=n_train, n_test=n_test, epochs=args.epochs or epochs, threads=args.threads)
    print(text)


if __name__ == "__main__":
    main()
