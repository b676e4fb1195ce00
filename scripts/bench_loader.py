#!/usr/bin/env python
"""Benchmark: samples/s of the training data path with PromptMix mixing against real-only, in one process.

Both sides run the same code the training scripts run (``promptmix.training``): the epoch plan
(``mixing.epoch_batches``), ``TrainSet`` (JPEG decoding, density targets, crops, flips, the
stride-8 mass-preserving resize) and ``collate`` in a ``DataLoader``, on synthetic crowd-counting
datasets written to a temporary folder:

- ours: ``--mixing promptmix`` with ``r_mix`` = the number of real rows (half of each epoch is fake
  rows: JPEG + a stored float16 annotator map resized to the image);
- baseline: ``--mixing none`` (real rows only: JPEG + a density map from the head points).

Printed: samples/s of each, their ratio (goal: >= 0.9x, i.e. mixing costs at most 10 % of the
data-path throughput). The sides alternate and the best of ``--repeats`` epochs of each is kept.

    OMP_NUM_THREADS=1 python scripts/bench_loader.py --real 64 --fake 512 --size 384x512 --crop 256
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

GOAL = 0.9


def _samples_per_second(strategy: str, data, settings, *, r_mix: int | None, batch_size: int, epoch: int,
                        num_workers: int) -> float:
    from torch.utils.data import DataLoader

    from promptmix.training.train.data import TrainSet, collate
    from promptmix.training.train.mixing import MixingSpec, epoch_batches

    spec = MixingSpec(strategy=strategy, r_mix=r_mix)
    n_fake = len(data.fake) if data.fake is not None else 0
    t0 = time.perf_counter()
    batches = epoch_batches(spec, len(data.train), n_fake, batch_size, epoch=epoch, seed=0)
    keyed, pos = [], 0
    for b in batches:
        keyed.append([(s, r, pos + i) for i, (s, r) in enumerate(b)])
        pos += len(b)
    train_set = TrainSet(data if strategy != "none" else data.with_fake(None), settings)
    train_set.set_epoch(epoch)
    loader = DataLoader(train_set, batch_sampler=keyed, collate_fn=collate, num_workers=num_workers)
    n = 0
    for groups in loader:
        n += sum(len(g["position"]) for g in groups)
    return n / (time.perf_counter() - t0)


def measure(*, n_real: int, n_fake: int, size: tuple[int, int], crop: int | None, batch_size: int, repeats: int,
            num_workers: int = 0, workdir: str | Path | None = None) -> dict:
    from promptmix.testing.synthetic import write_fake_dataset, write_real_dataset
    from promptmix.training.train.config import TrainConfig
    from promptmix.training.train.data import SampleSettings, load_training_data

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        real = write_real_dataset(tmp / "real", "counting", sizes={"train": n_real, "validation": 1, "test": 1},
                                  size=size)
        fake = write_fake_dataset(tmp / "fake", "counting", prompts=["large crowd"], per_prompt=n_fake, size=size)
        config = TrainConfig(task="counting", real=str(real), fake=str(fake), mixing="promptmix", r_mix=n_real,
                             crop_size=crop, batch_size=batch_size, output_dir=str(tmp / "out"))
        data = load_training_data(config)
        settings = SampleSettings.from_config(config, output_stride=8)
        best = {"promptmix": 0.0, "none": 0.0}
        _samples_per_second("promptmix", data, settings, r_mix=n_real, batch_size=batch_size, epoch=0,
                            num_workers=num_workers)  # warm-up (file cache, imports)
        for rep in range(repeats):
            for strategy in ("none", "promptmix"):
                sps = _samples_per_second(strategy, data, settings, r_mix=n_real, batch_size=batch_size,
                                          epoch=rep + 1, num_workers=num_workers)
                best[strategy] = max(best[strategy], sps)
    ratio = best["promptmix"] / best["none"]
    return {"name": f"training data path, promptmix vs real-only ({size[0]}x{size[1]}, crop {crop})",
            "ours": best["promptmix"], "baseline": best["none"], "unit": "samples/s", "ratio": ratio,
            "goal": f">= {GOAL}x", "ok": ratio >= GOAL}


def run(quick: bool = False) -> list[dict]:
    """For ``scripts/bench.py``."""
    if quick:
        return [measure(n_real=16, n_fake=64, size=(192, 256), crop=128, batch_size=8, repeats=2)]
    return [measure(n_real=64, n_fake=512, size=(384, 512), crop=256, batch_size=8, repeats=3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=int, default=64, help="real training rows (default 64)")
    parser.add_argument("--fake", type=int, default=512, help="fake rows (default 512)")
    parser.add_argument("--size", default="384x512", help="image HxW (default 384x512)")
    parser.add_argument("--crop", type=int, default=256, help="training crop size, 0 for whole images (default 256)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs of each side; the best is kept")
    parser.add_argument("--num-workers", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("PROMPTMIX_NO_PROGRESS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from promptmix.models.info import parse_size

    row = measure(n_real=args.real, n_fake=args.fake, size=parse_size(args.size), crop=args.crop or None,
                  batch_size=args.batch_size, repeats=args.repeats, num_workers=args.num_workers)
    print(f"real-only (baseline): {row['baseline']:.1f} samples/s")
    print(f"promptmix (ours):     {row['ours']:.1f} samples/s")
    print(f"ratio: {row['ratio']:.2f}x (goal {row['goal']}) -> {'met' if row['ok'] else 'NOT met'}")


if __name__ == "__main__":
    main()
