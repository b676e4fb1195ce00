"""Benchmark: ``promptmix generate`` against a batched plain diffusers loop, side by side in one process.

Both use the same tiny random Stable Diffusion pipeline (``promptmix.testing``) on the CPU, the
same prompts, sizes, steps, batch size and per-row seeds, with threads pinned to one (torch, BLAS, OpenMP):

- ours: :func:`promptmix.generation.runner.generate`: batched pipeline calls, JPEG encoding and
  Parquet writing on a background thread, resumable chunk files;
- peer: the loop a user writes from the diffusers docs: the pipeline loaded once, then per batch of
  ``batch_size`` rows one ``pipe(prompts, generator=[one per row], ...)`` call and each image saved
  as a JPEG file of the same quality (``image.save(..., quality=90)``).

Rounds are interleaved (peer, ours), median of ``--repeats`` (default 3). Printed: ours / peer in images/s,
their ratio (goal >= 1.0x: as fast as the plain loop while also writing resumable Parquet chunks) and
the share of our generation wall time spent inside the pipeline call (goal >= 85%: encoding and
writing overlap the next batch). Model loading is outside both timings.

    python scripts/bench_generate.py --rows 128 --batch-size 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

RATIO_GOAL = 1.0


def load_pipeline(model_dir: Path):
    import torch
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(str(model_dir), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def batched_loop(pipe, rows, out_dir: Path, steps: int, batch_size: int, quality: int = 90) -> float:
    """The peer: batches of ``batch_size`` rows of one size, one pipeline call each, JPEG files; returns seconds."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    batches, current = [], []
    for row in rows:  # consecutive rows of the same generation size, at most batch_size
        if current and (len(current) == batch_size or
                        (row.gen_height, row.gen_width) != (current[0].gen_height, current[0].gen_width)):
            batches.append(current)
            current = []
        current.append(row)
    if current:
        batches.append(current)
    for batch in batches:
        images = pipe([r.prompt for r in batch], num_inference_steps=steps, height=batch[0].gen_height,
                      width=batch[0].gen_width,
                      generator=[torch.Generator().manual_seed(r.seed) for r in batch]).images
        for row, image in zip(batch, images):
            if image.size != (row.width, row.height):
                image = image.resize((row.width, row.height))
            image.save(out_dir / f"{row.row_id}.jpg", quality=quality)
    return time.perf_counter() - t0


def measure(*, rows: int = 128, batch_size: int = 16, size: str = "64x64", steps: int = 2, chunk_size: int = 64,
            repeats: int = 3, echo=print) -> dict:
    """Time both sides on the same plan; returns images/s of each, the speed-up and the pipeline share."""
    os.environ.setdefault("PROMPTMIX_NO_PROGRESS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    torch.set_num_threads(1)
    from promptmix.utils.verbosity import quiet_libraries

    quiet_libraries()
    from promptmix.generation.generate.config import GenerateConfig
    from promptmix.generation.generate.families import resolve_config
    from promptmix.generation.generate.plan import build_plan
    from promptmix.generation.generate.runner import generate
    from promptmix.generation.prompts.bag import load_prompt_bag
    from promptmix.testing._diffusion import save_tiny_sd

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = save_tiny_sd(tmp / "sd")
        k = 8
        n_prompts = max(1, rows // k)
        prompts = tmp / "prompts.txt"
        prompts.write_text("".join(f"a photo of a busy street, scene {i}\n" for i in range(n_prompts)))
        config = GenerateConfig(prompts=str(prompts), model=str(model), images_per_prompt=k, size=size,
                                steps=steps, chunk_size=chunk_size, batch_size=batch_size,
                                device="cpu", jpeg_quality=90)
        # the peer's rows: the plan generate builds (its sizes, seeds and prompts), from the resolved config
        plan = build_plan(load_prompt_bag(prompts), resolve_config(config, str(model)), default_size=(64, 64))
        n = plan.num_rows
        echo(f"{n} images of {size}, {steps} steps, batch {batch_size}, tiny SD pipeline on CPU "
             f"(torch threads: {torch.get_num_threads()}); median of {repeats}, interleaved")

        pipe = load_pipeline(model)
        warm = plan.rows[0]
        pipe(warm.prompt, num_inference_steps=steps, height=warm.gen_height, width=warm.gen_width)
        ours, base = [], []
        for r in range(repeats):
            base.append(batched_loop(pipe, plan.rows, tmp / f"jpg-{r}", steps, batch_size))
            report = generate(config, tmp / f"run-{r}")
            assert report.rows_done == n, report.summary_lines()
            ours.append(report)
        t_ours = statistics.median(rep.generation_seconds for rep in ours)
        share = statistics.median(rep.pipeline_seconds / rep.generation_seconds for rep in ours)
        t_base = statistics.median(base)
    ips_ours, ips_base = n / t_ours, n / t_base
    return {"images": n, "batch_size": batch_size, "ours_seconds": t_ours, "baseline_seconds": t_base,
            "ours_ips": ips_ours, "baseline_ips": ips_base, "speedup": ips_ours / ips_base,
            "pipeline_share": share}


def run(quick: bool = False) -> list[dict]:
    """Rows for ``scripts/bench.py``."""
    m = measure(rows=64 if quick else 128, repeats=3, echo=lambda *_: None)
    return [
        {"name": f"generate, {m['images']} images 64x64 (batch {m['batch_size']}) vs batched diffusers loop + JPEG",
         "ours": m["ours_ips"], "baseline": m["baseline_ips"], "unit": "images/s", "ratio": m["speedup"],
         "goal": f">= {RATIO_GOAL:g}x", "ok": m["speedup"] >= RATIO_GOAL},
        {"name": "generate: pipeline call share of our wall time", "ours": 100 * m["pipeline_share"],
         "baseline": None, "unit": "%", "ratio": None, "goal": ">= 85%", "ok": m["pipeline_share"] >= 0.85},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=128, help="images generated by each side (default: 128)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size of both sides (default: 16)")
    parser.add_argument("--size", default="64x64", help="image size (default: 64x64)")
    parser.add_argument("--steps", type=int, default=2, help="denoising steps (default: 2)")
    parser.add_argument("--chunk-size", type=int, default=64, help="our rows per chunk file (default: 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side; the median is kept")
    args = parser.parse_args()
    m = measure(rows=args.rows, batch_size=args.batch_size, size=args.size, steps=args.steps,
                chunk_size=args.chunk_size, repeats=args.repeats)
    ok = m["speedup"] >= RATIO_GOAL
    print(f"{'benchmark':<58} {'ours':>12} {'peer':>12} {'ratio':>6}  goal")
    print(f"{'generate vs batched diffusers loop (images/s)':<58} {m['ours_ips']:12.1f} {m['baseline_ips']:12.1f} "
          f"{m['speedup']:5.2f}x  >= {RATIO_GOAL:g}x -> {'met' if ok else 'NOT met'}")
    print(f"{'  seconds':<58} {m['ours_seconds']:12.2f} {m['baseline_seconds']:12.2f}")
    share = 100 * m["pipeline_share"]
    print(f"{'generate: pipeline call share of our wall time':<58} {share:11.1f}% {'':>12} {'':>6}  >= 85% -> "
          f"{'met' if share >= 85 else 'NOT met'}")


if __name__ == "__main__":
    main()
