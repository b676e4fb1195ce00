#!/usr/bin/env python
"""Benchmark: ``promptmix annotate`` against a plain annotation loop, side by side in one process, on CPU.

Setup (a temporary folder): a run folder of ``--images`` generated JPEGs (default 32 at 512x384, smooth
noise, quality 90, in chunks of 8 as ``promptmix generate`` writes them) and two tiny counting annotators
(CSRNet with every channel count divided by 8, seeds 0 and 1, in promptmix's folder format).

- ours: ``annotate_run(run, [a, b], batch_size=8, device="cpu")`` from an empty ``annotations/``
  (what ``promptmix annotate`` does: load both, decode, forward, write the annotation chunks);
- peer: the loop a user would write from the models' READMEs: load both networks, then per chunk
  read the Parquet file, per batch of 8 decode with PIL, one ``ToTensor``-style normalisation of the
  batch, each model in turn, and write each model's counts and float16 maps with ``pyarrow`` (one
  Parquet file per chunk and model).

Both use the same networks and ``predict_density``; threads are pinned to one (torch, BLAS, OpenMP).
Rounds are interleaved (ours, peer), median of ``--repeats`` (default 5). Printed per line: ours / peer /
ratio / goal / met. The forward share is the time inside ``predict_density`` (the networks' forward)
over the wall time of the call. Goals: ratio >= 1.0x, our forward share >= 85 %.

Ours uses two helper threads (decode ahead, write behind) besides the forward pass; the peer is
single-threaded, as a plain loop is. With torch pinned to one thread, ours may use a second core for
decoding and writing: that overlap is what is measured.

    python scripts/bench_annotate.py
    python scripts/bench_annotate.py --quick     # 16 images at 256x192, 2 rounds
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("PROMPTMIX_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

RATIO_GOAL = 1.0
SHARE_GOAL = 85.0
BATCH = 8


class _ForwardClock:
    """Wraps ``predict_density``: the seconds spent in the networks' forward passes."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


def plain_loop(run: Path, folders: list[Path], out: Path, clock: _ForwardClock) -> int:
    """The peer: PIL decode, one normalisation per batch, each model in turn, pyarrow writes."""
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from PIL import Image

    from promptmix.models.counting import load_counter_folder

    models = [load_counter_folder(f) for f in folders]
    models = [(m.eval(), cfg) for m, cfg in models]
    cfg0 = models[0][1]
    mean = torch.tensor(cfg0.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg0.image_std).view(1, 3, 1, 1)
    out.mkdir(parents=True, exist_ok=True)
    rows = 0
    for chunk in sorted((run / "images").glob("chunk-*.parquet")):
        table = pq.read_table(chunk, columns=["row_id", "image"])
        ids = table.column("row_id").to_pylist()
        cells = table.column("image").to_pylist()
        results = [{"row_id": [], "count": [], "density": [], "shape": []} for _ in models]
        for start in range(0, len(ids), BATCH):
            ims = [np.asarray(Image.open(io.BytesIO(c["bytes"])).convert("RGB"), dtype=np.float32) / 255.0
                   for c in cells[start:start + BATCH]]
            x = (torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).contiguous() - mean) / std
            with torch.inference_mode():
                for (model, cfg), res in zip(models, results):
                    dens = clock(model, cfg, x).float().numpy()
                    for rid, d in zip(ids[start:start + BATCH], dens):
                        res["row_id"].append(rid)
                        res["count"].append(float(d.sum(dtype=np.float64)))
                        res["density"].append(d.astype(np.float16).tobytes())
                        res["shape"].append(list(d.shape))
        for i, res in enumerate(results):
            pq.write_table(pa.table(res), out / f"model{i}-{chunk.name}")
        rows += len(ids)
    return rows


def measure(n: int = 32, width: int = 512, height: int = 384, repeats: int = 5, width_div: int = 8) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    from promptmix.annotation.annotate import runner
    from promptmix.annotation.annotators import counting as counting_mod
    from promptmix.models.counting import CounterConfig, build_counter, save_counter
    from promptmix.testing._annotators import write_generated_run
    from promptmix.testing.synthetic import smooth_noise_images

    tmp = Path(tempfile.mkdtemp(prefix="promptmix-bench-annotate-"))
    real_predict = counting_mod.predict_density
    try:
        run = write_generated_run(tmp / "run", smooth_noise_images(n, width, height), task="counting", chunk_size=8)
        folders = []
        for seed in (0, 1):
            config = CounterConfig.default("csrnet", width_div=width_div)
            torch.manual_seed(seed)
            folders.append(save_counter(build_counter(config), config, tmp / f"counter-{seed}"))
        specs = [f"a:{folders[0]}", f"b:{folders[1]}"]

        def ours() -> tuple[float, float, float]:
            shutil.rmtree(run / "annotations", ignore_errors=True)
            clock = _ForwardClock(real_predict)
            counting_mod.predict_density = clock
            try:
                t0, c0 = time.perf_counter(), time.process_time()
                runner.annotate_run(run, specs, batch_size=BATCH, device="cpu")
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            finally:
                counting_mod.predict_density = real_predict
            return wall, clock.seconds, cpu

        def peer() -> tuple[float, float, float]:
            out = tmp / "peer-out"
            shutil.rmtree(out, ignore_errors=True)
            clock = _ForwardClock(real_predict)
            t0, c0 = time.perf_counter(), time.process_time()
            rows = plain_loop(run, folders, out, clock)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            assert rows == n
            return wall, clock.seconds, cpu

        ours(), peer()  # warm-up (imports, allocator)
        res: dict[str, list[tuple[float, float, float]]] = {"ours": [], "peer": []}
        for _ in range(repeats):
            res["ours"].append(ours())
            res["peer"].append(peer())
        wall = {k: statistics.median(w for w, _, _ in v) for k, v in res.items()}
        share = {k: statistics.median(100 * f / w for w, f, _ in v) for k, v in res.items()}
        cpu = {k: statistics.median(c for _, _, c in v) for k, v in res.items()}
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        size = f"{n} images {width}x{height}, 2 counters (csrnet/{width_div}), batch {BATCH}, 1 thread"
        ratio = wall["peer"] / wall["ours"]
        return [
            {"name": f"annotate vs plain loop ({size})", "ours": wall["ours"], "baseline": wall["peer"], "unit": "s",
             "ratio": ratio, "goal": f">= {RATIO_GOAL:g}x", "ok": ratio >= RATIO_GOAL},
            {"name": "annotate forward share of wall time", "ours": share["ours"], "baseline": share["peer"],
             "unit": "%", "ratio": share["ours"] / share["peer"], "goal": f">= {SHARE_GOAL:g} %",
             "ok": share["ours"] >= SHARE_GOAL},
            {"name": "annotate CPU seconds, all threads (the same work: helper threads only move it)",
             "ours": cpu["ours"], "baseline": cpu["peer"], "unit": "s", "ratio": cpu["peer"] / cpu["ours"],
             "goal": "informational",
             "note": (f"1-min load average {load:.1f} on {os.cpu_count()} cores: with no idle core the decode and "
                      "write threads cannot overlap the forward pass" if load is not None else "")},
        ]
    finally:
        counting_mod.predict_density = real_predict
        shutil.rmtree(tmp, ignore_errors=True)


def run(quick: bool = False) -> list[dict]:
    """The rows ``scripts/bench.py`` collects."""
    return measure(16, 256, 192, repeats=2) if quick else measure()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16 images at 256x192, 2 rounds")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", default="512x384", help="WxH of the images (default 512x384)")
    parser.add_argument("--width-div", type=int, default=8, help="CSRNet channel divisor (default 8)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.quick:
        rows = run(quick=True)
    else:
        w, h = (int(v) for v in args.size.lower().split("x"))
        rows = measure(args.images, w, h, repeats=args.repeats, width_div=args.width_div)
    speed, share, cpu = rows
    met = {True: "met", False: "NOT met"}
    print(f"{'benchmark':<92} {'ours':>8} {'peer':>8} {'ratio':>6}  goal")
    print(f"{speed['name']:<92} {speed['ours']:7.2f}s {speed['baseline']:7.2f}s {speed['ratio']:5.2f}x  "
          f"{speed['goal']} -> {met[speed['ok']]}")
    print(f"{share['name']:<92} {share['ours']:7.1f}% {share['baseline']:7.1f}% {'':>6}  {share['goal']} -> "
          f"{met[share['ok']]}")
    print(f"{cpu['name']:<92} {cpu['ours']:7.2f}s {cpu['baseline']:7.2f}s {cpu['ratio']:5.2f}x  {cpu['goal']}")
    if cpu.get("note"):
        print(f"  ({cpu['note']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
