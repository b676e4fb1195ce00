"""Benchmark: ``promptmix generate`` against a per-image loop that saves PNG files, in one process.

Both use the same tiny random Stable Diffusion pipeline (``promptmix.testing``) on the CPU, the
same prompts, sizes, steps and per-row seeds:

- ours: :func:`promptmix.generation.runner.generate`: batched pipeline calls, JPEG encoding and
  Parquet writing on a background thread, resumable chunk files;
- baseline: the way peer tools do it: one pipeline call per image, ``image.save(...png)``.

Printed: images/s of each and their ratio (goal: >= 3x), and the share of our generation wall time
spent inside the pipeline call (goal: >= 85%: encoding and writing overlap the next batch).
Model loading is outside both timings (each loads the pipeline once, before its timed loop).

    OMP_NUM_THREADS=1 python scripts/bench_generate.py --rows 128 --batch-size 16
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def baseline_loop(model_dir: Path, rows, out_dir: Path, steps: int) -> float:
    """Per-image generation + PNG files; returns the seconds of the loop (pipeline already loaded)."""
    import torch
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(str(model_dir), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    warm = rows[0]
    pipe(warm.prompt, num_inference_steps=steps, height=warm.gen_height, width=warm.gen_width)
    t0 = time.perf_counter()
    for row in rows:
        image = pipe(row.prompt, num_inference_steps=steps, height=row.gen_height, width=row.gen_width,
                     generator=torch.Generator().manual_seed(row.seed)).images[0]
        if image.size != (row.width, row.height):
            image = image.resize((row.width, row.height))
        image.save(out_dir / f"{row.row_id}.png")
    return time.perf_counter() - t0


def measure(*, rows: int = 128, batch_size: int = 16, size: str = "64x64", steps: int = 2, chunk_size: int = 64,
            repeats: int = 2, echo=print) -> dict:
    """Time both sides on the same plan; returns images/s of each, the speed-up and the pipeline share."""
    os.environ.setdefault("PROMPTMIX_NO_PROGRESS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from promptmix.generation.generate.config import GenerateConfig
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
        plan = build_plan(load_prompt_bag(prompts), config, default_size=(64, 64))
        n = plan.num_rows
        echo(f"{n} images of {size}, {steps} steps, tiny SD pipeline on CPU "
             f"(torch threads: {torch.get_num_threads()}); best of {repeats}")

        ours, base = [], []
        for r in range(repeats):
            base.append(baseline_loop(model, plan.rows, tmp / f"png-{r}", steps))
            report = generate(config, tmp / f"run-{r}")
            assert report.rows_done == n, report.summary_lines()
            ours.append(report)
        best = min(ours, key=lambda rep: rep.generation_seconds)
        t_base = min(base)
    ips_ours, ips_base = n / best.generation_seconds, n / t_base
    return {"images": n, "batch_size": batch_size, "ours_seconds": best.generation_seconds, "baseline_seconds": t_base,
            "ours_ips": ips_ours, "baseline_ips": ips_base, "speedup": ips_ours / ips_base,
            "pipeline_share": best.pipeline_seconds / best.generation_seconds}


def run(quick: bool = False) -> list[dict]:
    """Rows for ``scripts/bench.py``."""
    m = measure(rows=64 if quick else 128, repeats=1 if quick else 2, echo=lambda *_: None)
    return [
        {"name": f"generate, {m['images']} images 64x64 (batch {m['batch_size']}) vs per-image loop + PNG",
         "ours": m["ours_ips"], "baseline": m["baseline_ips"], "unit": "images/s", "ratio": m["speedup"],
         "goal": ">= 3x", "ok": m["speedup"] >= 3},
        {"name": "generate: pipeline call share of our wall time", "ours": 100 * m["pipeline_share"],
         "baseline": None, "unit": "%", "ratio": None, "goal": ">= 85%", "ok": m["pipeline_share"] >= 0.85},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=128, help="images generated by each side (default: 128)")
    parser.add_argument("--batch-size", type=int, default=16, help="our batch size (default: 16)")
    parser.add_argument("--size", default="64x64", help="image size (default: 64x64)")
    parser.add_argument("--steps", type=int, default=2, help="denoising steps (default: 2)")
    parser.add_argument("--chunk-size", type=int, default=64, help="our rows per chunk file (default: 64)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each side; the best is kept")
    args = parser.parse_args()
    m = measure(rows=args.rows, batch_size=args.batch_size, size=args.size, steps=args.steps,
                chunk_size=args.chunk_size, repeats=args.repeats)
    print(f"baseline (per-image loop, PNG files):   {m['baseline_seconds']:7.2f} s  {m['baseline_ips']:8.1f} images/s")
    print(f"promptmix generate (batch {args.batch_size:>3}):        {m['ours_seconds']:7.2f} s  "
          f"{m['ours_ips']:8.1f} images/s")
    print(f"speed-up: {m['speedup']:.2f}x (goal >= 3x)")
    print(f"pipeline call share of our wall time: {100 * m['pipeline_share']:.1f}% (goal >= 85%)")


if __name__ == "__main__":
    main()
