#!/usr/bin/env python
"""Benchmark: what a ``promptmix`` command costs before it does anything (CPU seconds of the process).

Each case runs in a fresh interpreter and is measured by the child's own user + system CPU time
(``resource.getrusage(RUSAGE_CHILDREN)``), median of ``repeats`` runs, side by side with the peer:

- ours: ``promptmix --help``, ``promptmix annotate --help`` and a bad flag (``promptmix filter RUN --nope``);
- peer: what the command paid before the restructuring, importing torch, diffusers and datasets before
  parsing (``python -c "import torch, diffusers, datasets"``).

Goal: at most 0.3 s CPU for each of ours; the heavy libraries imported by each case are listed (none).

    python scripts/bench_cli.py
    python scripts/bench_cli.py --quick
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys

GOAL_S = 0.3
HEAVY = ("torch", "diffusers", "transformers", "datasets")
_PROBE = ("import runpy, sys, json\nsys.argv = ['promptmix', *sys.argv[1:]]\ntry:\n"
          "    runpy.run_module('promptmix', run_name='__main__')\nexcept SystemExit:\n    pass\n"
          "print(json.dumps([m for m in %r if m in sys.modules]), file=sys.stderr)" % (HEAVY,))


def _cpu_seconds(argv: list[str]) -> tuple[float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, proc.stderr


def _median(argv: list[str], repeats: int) -> tuple[float, str]:
    runs = [_cpu_seconds(argv) for _ in range(repeats)]
    return statistics.median(s for s, _ in runs), runs[-1][1]


def run(quick: bool = False) -> list[dict]:
    repeats = 3 if quick else 7
    peer, _ = _median([sys.executable, "-c", "import torch, diffusers, datasets"], repeats)
    rows = []
    for label, args in (("promptmix --help", ["--help"]), ("promptmix annotate --help", ["annotate", "--help"]),
                        ("promptmix filter RUN --nope (bad flag)", ["filter", "RUN", "--nope"])):
        ours, stderr = _median([sys.executable, "-c", _PROBE, *args], repeats)
        heavy = json.loads(stderr.strip().splitlines()[-1])
        rows.append({"name": f"{label}: CPU s (peer: import torch, diffusers, datasets)", "ours": round(ours, 3),
                     "baseline": round(peer, 3), "unit": "s", "ratio": round(peer / ours, 1) if ours else None,
                     "goal": f"<= {GOAL_S} s", "ok": ours <= GOAL_S and not heavy,
                     "note": f"heavy libraries imported: {', '.join(heavy) or 'none'}"})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs per case instead of 7")
    args = parser.parse_args()
    for row in run(args.quick):
        print(f"{row['name']:<75} {row['ours']:>7} s  peer {row['baseline']:>6} s  {row['ratio']:>6}x  "
              f"goal {row['goal']}  {'met' if row['ok'] else 'NOT met'}  ({row['note']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
