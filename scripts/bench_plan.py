#!/usr/bin/env python
"""Benchmark: ``promptmix run CONFIG --plan`` CPU per raw file on a warm hash cache, against a plain stat walk.

Setup (a temporary folder): the demo's config and models (``promptmix demo --config-only``), and two raw
folders, the demo's ShanghaiTech-style raw set (config B) and the same plus ``--files`` small extra files
(config A, 2,000 by default, 200 bytes each, in 20 sub-folders). Both configs are planned once to warm the
user's file-hash cache (``utils/statcache.py``, pointed at the temporary folder here).

- ours: ``run_pipeline(CONFIG, plan_only=True)`` as ``promptmix run CONFIG --plan`` calls it (config loading,
  every stage key, the raw files' fingerprint); CPU seconds (``time.process_time``) of A minus B, divided
  by the extra files: the cost one more raw file adds to a plan;
- peer: what any tool that checks raw files for changes must do at least: ``os.walk`` over A's raw folder
  and one ``os.stat`` per file, CPU seconds divided by its files.

Rounds are interleaved (A, B, walk), median of ``--repeats`` (default 5). Goal: <= 20 us CPU per raw file.

    python scripts/bench_plan.py
    python scripts/bench_plan.py --quick     # 500 files, 3 rounds
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

GOAL_US = 20.0


def _walk_stat(root: Path) -> int:
    n = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            os.stat(os.path.join(folder, name))
            n += 1
    return n


def _cpu(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def measure(files: int = 2000, repeats: int = 5) -> list[dict]:
    import yaml

    tmp = Path(tempfile.mkdtemp(prefix="promptmix-bench-plan-"))
    old_cache = os.environ.get("PROMPTMIX_CACHE_DIR")
    os.environ["PROMPTMIX_CACHE_DIR"] = str(tmp / "user-cache")
    try:
        from promptmix.pipeline.demo import DemoSettings, write_demo_inputs
        from promptmix.pipeline.engine import run_pipeline

        base_config = write_demo_inputs(tmp / "demo", DemoSettings.tiny_random())
        cfg = yaml.safe_load(base_config.read_text(encoding="utf-8"))
        raw_b = Path(cfg["real"]["root"])
        raw_a = tmp / "raw-a"
        shutil.copytree(raw_b, raw_a)
        extra = raw_a / "part_B" / "extra"
        for i in range(files):
            sub = extra / f"d{i % 20:02d}"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"f{i:06d}.bin").write_bytes(os.urandom(200))
        configs = {}
        for name, raw in (("a", raw_a), ("b", raw_b)):
            c = dict(cfg, run_dir=str(tmp / f"run-{name}"), real=dict(cfg["real"], root=str(raw)))
            configs[name] = tmp / f"{name}.yaml"
            configs[name].write_text(yaml.safe_dump(c, sort_keys=False), encoding="utf-8")
        total_a = _walk_stat(raw_a)
        cold = _cpu(lambda: run_pipeline(configs["a"], plan_only=True))  # hashes everything once
        run_pipeline(configs["b"], plan_only=True)
        times: dict[str, list[float]] = {"a": [], "b": [], "walk": []}
        for _ in range(repeats):
            times["a"].append(_cpu(lambda: run_pipeline(configs["a"], plan_only=True)))
            times["b"].append(_cpu(lambda: run_pipeline(configs["b"], plan_only=True)))
            times["walk"].append(_cpu(lambda: _walk_stat(raw_a)))
        med = {k: statistics.median(v) for k, v in times.items()}
        ours = (med["a"] - med["b"]) / files * 1e6
        peer = med["walk"] / total_a * 1e6
        return [
            {"name": f"--plan CPU per raw file, warm cache ({files} extra files)", "ours": ours, "baseline": peer,
             "unit": "us", "ratio": peer / ours if ours > 0 else None, "goal": f"<= {GOAL_US:g} us per file",
             "ok": ours <= GOAL_US,
             "note": f"peer: os.walk + os.stat per file over {total_a} files; ratio = peer / ours"},
            {"name": f"--plan CPU, whole plan ({total_a} raw files, warm)", "ours": med["a"], "baseline": None,
             "unit": "s", "ratio": None, "goal": "informational"},
            {"name": f"--plan CPU, first call (cold cache, {total_a} raw files hashed)", "ours": cold,
             "baseline": None, "unit": "s", "ratio": None, "goal": "informational"},
        ]
    finally:
        if old_cache is None:
            os.environ.pop("PROMPTMIX_CACHE_DIR", None)
        else:
            os.environ["PROMPTMIX_CACHE_DIR"] = old_cache
        shutil.rmtree(tmp, ignore_errors=True)


def run(quick: bool = False) -> list[dict]:
    """The rows ``scripts/bench.py`` collects."""
    return measure(500, 3) if quick else measure()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 files, 3 rounds")
    parser.add_argument("--files", type=int, default=2000, help="extra raw files (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="median of this many rounds (default 5)")
    args = parser.parse_args(argv)
    os.environ.setdefault("PROMPTMIX_NO_PROGRESS", "1")
    rows = run(quick=True) if args.quick else measure(args.files, args.repeats)
    first = rows[0]
    ratio = f"{first['ratio']:.2f}x" if first["ratio"] else "-"
    print(f"{'benchmark':<62} {'ours':>10} {'peer':>10} {'ratio':>7}  goal")
    print(f"{first['name']:<62} {first['ours']:8.2f}us {first['baseline']:8.2f}us {ratio:>7}  {first['goal']} -> "
          f"{'met' if first['ok'] else 'NOT met'}")
    print(f"  ({first['note']})")
    for row in rows[1:]:
        print(f"{row['name']:<62} {row['ours'] * 1e3:8.1f}ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
