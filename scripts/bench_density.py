#!/usr/bin/env python
"""Benchmark: ``promptmix.density.density_map`` against the CSRNet-pytorch ``make_dataset`` algorithm, in one process.

On a 768x1024 frame with 500 seeded heads (uniform positions, numpy seed 0) and geometry-adaptive
sigma (0.1 x summed distance to the 3 nearest heads):

- ours: ``density_map(points, 768, 1024, "adaptive")`` (normalised Gaussians, the training target)
  and ``density_map(..., mode="reference")`` (CSRNet's result), best of ``repeats`` calls each;
- baseline: ``reference_density_map_slow``, CSRNet's algorithm as written (one full-frame
  ``scipy.ndimage.gaussian_filter`` per head), run once.

Printed: both times, the speed ratios (goal >= 3000x; a plain per-head stamping loop in Python
reaches about 1000x) and the largest absolute difference between ``mode="reference"`` and the
baseline relative to the map's peak (goal <= 1e-6).

    OMP_NUM_THREADS=1 python scripts/bench_density.py            # full size (the baseline takes ~30 s)
    python scripts/bench_density.py --quick                      # 192x256, 100 heads
"""

from __future__ import annotations

import argparse
import time

SPEED_GOAL = 3000.0
PARITY_GOAL = 1e-6


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def measure(height: int = 768, width: int = 1024, heads: int = 500, *, repeats: int = 20, seed: int = 0) -> list[dict]:
    import numpy as np

    from promptmix.density import density_map, reference_density_map_slow

    rng = np.random.default_rng(seed)
    points = np.stack([rng.uniform(0, width, heads), rng.uniform(0, height, heads)], axis=1)
    density_map(points, height, width, "adaptive")  # warm up (imports, BLAS)
    t_ours, _ = _best(lambda: density_map(points, height, width, "adaptive"), repeats)
    t_ref_mode, ref_fast = _best(lambda: density_map(points, height, width, "adaptive", mode="reference"), repeats)
    t0 = time.perf_counter()
    baseline = reference_density_map_slow(points, height, width, "adaptive")
    t_base = time.perf_counter() - t0
    peak = float(np.abs(baseline).max())
    diff = float(np.abs(ref_fast.astype(np.float64) - baseline).max()) / peak
    size = f"{height}x{width}, {heads} heads, adaptive sigma"
    return [
        {"name": f"density map ({size})", "ours": t_ours, "baseline": t_base, "unit": "s",
         "ratio": t_base / t_ours, "goal": f">= {SPEED_GOAL:.0f}x", "ok": t_base / t_ours >= SPEED_GOAL},
        {"name": f"density map, mode=reference ({size})", "ours": t_ref_mode, "baseline": t_base, "unit": "s",
         "ratio": t_base / t_ref_mode, "goal": f">= {SPEED_GOAL:.0f}x", "ok": t_base / t_ref_mode >= SPEED_GOAL},
        {"name": "mode=reference vs CSRNet: max |diff| / peak", "ours": diff, "baseline": None, "unit": "",
         "ratio": None, "goal": f"<= {PARITY_GOAL:g}", "ok": diff <= PARITY_GOAL},
    ]


def run(quick: bool = False) -> list[dict]:
    """The rows ``scripts/bench.py`` collects.

    quick: a 192x256 frame with 100 heads. The baseline's cost grows with frame area x heads and ours
    with the heads' kernel areas, so the speed goal is judged at full size only (quick speed rows are
    informational); the parity goal is judged at any size.
    """
    if not quick:
        return measure()
    rows = measure(192, 256, 100, repeats=10)
    for row in rows[:2]:
        row.pop("ok")
        row["goal"] = f"full size: >= {SPEED_GOAL:.0f}x"
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="192x256 frame, 100 heads")
    parser.add_argument("--size", default="768x1024", help="HxW of the frame (default 768x1024)")
    parser.add_argument("--heads", type=int, default=500, help="number of heads (default 500)")
    parser.add_argument("--repeats", type=int, default=20, help="best of this many calls of ours (default 20)")
    args = parser.parse_args(argv)
    if args.quick:
        rows = run(quick=True)
    else:
        h, w = (int(v) for v in args.size.lower().split("x"))
        rows = measure(h, w, args.heads, repeats=args.repeats)
    speed, ref_speed, parity = rows
    met = {True: "met", False: "NOT met", None: "judged at full size only"}
    print(f"CSRNet make_dataset (baseline):    {speed['baseline'] * 1e3:10.1f} ms")
    print(f"density_map adaptive (ours):       {speed['ours'] * 1e3:10.3f} ms")
    print(f"density_map mode=reference (ours): {ref_speed['ours'] * 1e3:10.3f} ms")
    print(f"speed ratio: {speed['ratio']:.0f}x (goal {speed['goal']}) -> {met[speed.get('ok')]}")
    print(f"speed ratio, mode=reference: {ref_speed['ratio']:.0f}x (goal {ref_speed['goal']}) -> "
          f"{met[ref_speed.get('ok')]}")
    print(f"max |reference - CSRNet| / peak: {parity['ours']:.2e} (goal {parity['goal']}) -> {met[parity['ok']]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
