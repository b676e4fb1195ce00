#!/usr/bin/env python
"""Benchmark: ``promptmix.density.box_density_map`` (PANDA-Crowd's box-matched kernels) against the plain loop.

On a PANDA-sized frame (1440x2560, the paper's resize) with 2,000 seeded head boxes (numpy seed 0; sides
4-40 px, as heads of a gigapixel crowd shrunk ~10x):

- ours: ``box_density_map(boxes, 1440, 2560)`` (separable kernels, accumulated tile by tile with BLAS),
  best of ``repeats`` calls;
- baseline: ``reference_box_density_map_slow``, the same map written out box by box (a dense 2-D Gaussian
  over each box window, divided by its sum, added), run once.

Printed: both times, the speed ratio (goal >= 2x) and the largest absolute difference relative to the
map's peak (goal <= 1e-5).

    OMP_NUM_THREADS=1 python scripts/bench_box_density.py
    python scripts/bench_box_density.py --quick            # 360x640, 300 boxes
"""

from __future__ import annotations

import argparse
import time

from _timing import median_time

SPEED_GOAL = 2.0
PARITY_GOAL = 1e-5


def measure(height: int = 1440, width: int = 2560, boxes: int = 2000, *, repeats: int = 5, seed: int = 0) -> list[dict]:
    import numpy as np

    from promptmix.density import box_density_map, reference_box_density_map_slow

    rng = np.random.default_rng(seed)
    side = rng.uniform(4, 40, boxes)
    x0, y0 = rng.uniform(0, width, boxes), rng.uniform(0, height, boxes)
    b = np.stack([x0, y0, x0 + side, y0 + side * rng.uniform(0.8, 1.3, boxes)], axis=1)
    box_density_map(b, height, width)  # warm up
    t_ours, ours = median_time(lambda: box_density_map(b, height, width), repeats)
    t0 = time.perf_counter()
    base = reference_box_density_map_slow(b, height, width)
    t_base = time.perf_counter() - t0
    diff = float(np.abs(ours.astype(np.float64) - base).max() / max(float(np.abs(base).max()), 1e-12))
    size = f"{height}x{width}, {boxes} boxes"
    return [
        {"name": f"box density map ({size})", "ours": t_ours, "baseline": t_base, "unit": "s",
         "ratio": t_base / t_ours, "goal": f">= {SPEED_GOAL:g}x", "ok": t_base / t_ours >= SPEED_GOAL},
        {"name": "box density map vs box-by-box loop: max |diff| / peak", "ours": diff, "baseline": None,
         "unit": "", "ratio": None, "goal": f"<= {PARITY_GOAL:g}", "ok": diff <= PARITY_GOAL},
    ]


def run(quick: bool = False) -> list[dict]:
    """The rows ``scripts/bench.py`` collects (quick: 360x640, 300 boxes; its speed row is informational)."""
    if not quick:
        return measure()
    rows = measure(360, 640, 300, repeats=3)
    rows[0].pop("ok")
    rows[0]["goal"] = f"full size: >= {SPEED_GOAL:g}x"
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="360x640 frame, 300 boxes")
    args = parser.parse_args(argv)
    speed, parity = run(quick=args.quick)
    met = {True: "met", False: "NOT met", None: "judged at full size only"}
    print(f"box-by-box loop (baseline): {speed['baseline'] * 1e3:10.1f} ms")
    print(f"box_density_map (ours):     {speed['ours'] * 1e3:10.1f} ms")
    print(f"speed ratio: {speed['ratio']:.1f}x (goal {speed['goal']}) -> {met[speed.get('ok')]}")
    print(f"max |ours - loop| / peak: {parity['ours']:.2e} (goal {parity['goal']}) -> {met[parity['ok']]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
