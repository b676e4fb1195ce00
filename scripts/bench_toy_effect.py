#!/usr/bin/env python
"""Benchmark: does PromptMix make the student better in the toy world? Three toy-world seeds, side by side.

For each seed the demo's pipeline (``promptmix.pipeline.demo``: real toy data, the toy world's trained
captioner, generator and two counters, ResCSRNet students) runs with four training runs on the same real data
and the same generated images:

- ``real-only``: the real training split alone (the baseline);
- ``promptmix``: real + r_mix fake rows drawn afresh every epoch from the filtered fake set (kept 75 %);
- ``promptmix-unfiltered``: the same from every generated image (no quality filtering, config ``all``);
- ``real-only-steps``: the real split alone for as many optimizer steps as ``promptmix`` takes (more epochs),
  so that a gain cannot come from more gradient steps alone;
- ``control``: the ``promptmix`` run's settings with ideal "generated" images instead of the toy generator's:
  fresh toy scenes labelled by the same two annotators through the real annotate and filter code
  (``promptmix.toy.control``), so the table separates what the generator limits from the rest of the method.

It prints test MAE per run and seed, PromptMix / real-only (goal: at most 0.8 on every seed), and each
annotator's own MAE on the same test images (``annotate.evaluate_split``), as a table. Threads are pinned.

    python scripts/bench_toy_effect.py                 # seeds 0 1 2 (a few minutes on 2 CPU cores)
    python scripts/bench_toy_effect.py --seeds 0 --out /tmp/bte
    python scripts/bench_toy_effect.py --set guidance_scale=7 --set toy_models_dir=/tmp/toy   # other settings
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
GOAL = 0.8
RUNS = ("real-only", "promptmix", "promptmix-unfiltered", "real-only-steps", "control")


def demo_overrides(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs of :class:`promptmix.pipeline.demo.DemoSettings` fields (values read as YAML)."""
    import dataclasses

    import yaml

    from promptmix.pipeline.demo import DemoSettings

    fields = {f.name for f in dataclasses.fields(DemoSettings)} - {"seed", "random_models"}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE with KEY one of the demo settings "
                             f"{', '.join(sorted(fields))}")
        out[key] = yaml.safe_load(value)
        if key == "size":
            out[key] = tuple(out[key])
    return out


def run_seed(out: Path, seed: int, echo, overrides: dict | None = None) -> dict:
    import yaml

    from promptmix.pipeline import load_config, run_pipeline
    from promptmix.pipeline.demo import DemoSettings, demo_config, demo_models, write_raw
    from promptmix.run_folder import RunFolder

    s = DemoSettings(seed=seed, **(overrides or {}))
    out.mkdir(parents=True, exist_ok=True)
    models = demo_models(out, s)
    write_raw(out / "raw", s)
    config = demo_config(out, models, out / "raw", s)
    config["train"]["promptmix-unfiltered"] = {**config["train"]["promptmix"], "fake_config": "all"}
    path = out / "bench.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    t0 = time.perf_counter()
    run_pipeline(load_config(path), echo=None)
    run = RunFolder(out / "run")
    # the real-only run with as many optimizer steps as the promptmix run
    rec = json.loads((run.train_run("promptmix") / "metrics.json").read_text())
    base = json.loads((run.train_run("real-only") / "metrics.json").read_text())
    steps_mix, steps_real = (m["history"][-1]["steps"] if m.get("history") else None for m in (rec, base))
    if steps_mix and steps_real:
        epochs = math.ceil(s.epochs * steps_mix / steps_real)
    else:
        epochs = s.epochs * 2
    config["train"]["real-only-steps"] = {**config["train"]["real-only"], "epochs": epochs}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run_pipeline(load_config(path), echo=None)
    # the control: the promptmix run's settings, ideal images labelled by the same annotators
    from promptmix.toy.control import labelled_toy_fakes
    from promptmix.training.train.config import TrainConfig
    from promptmix.training.train.trainer import train

    control_fake = labelled_toy_fakes(out / "control", config["annotate"]["annotators"],
                                      keep_percent=s.keep_percent, target=s.target)
    control_dir = run.train_run("control")
    if not (control_dir / "metrics.json").is_file():
        train(TrainConfig(task="counting", real=str(run.real), fake=str(control_fake), output_dir=str(control_dir),
                          **config["train"]["promptmix"]))
    seconds = time.perf_counter() - t0
    metrics = {name: json.loads((run.train_run(name) / "metrics.json").read_text()) for name in RUNS}
    real_eval = json.loads((run.annotations / "real_eval.json").read_text())["annotators"]
    filt = run.stage_record("filter") or {}
    return {"seed": seed, "seconds": seconds, "mae": {n: metrics[n]["test/mae"] for n in RUNS},
            "steps": {n: metrics[n]["history"][-1]["steps"] if metrics[n].get("history") else None for n in RUNS}, "epochs_real_steps": epochs,
            "annotators": {n: r["mae"] for n, r in real_eval.items()}, "kept": filt.get("kept"),
            "rows": filt.get("rows")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a demo setting for every seed, e.g. --set guidance_scale=7 --set epochs=80 "
                        "(promptmix.pipeline.demo.DemoSettings; toy_models_dir=DIR takes other toy models)")
    args = p.parse_args(argv)
    overrides = demo_overrides(args.set)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from promptmix.utils.progress import disable_progress_bars

    disable_progress_bars()
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="bench_toy_effect_")
    root = Path(args.out or tmp.name)
    results = []
    for seed in args.seeds:
        r = run_seed(root / f"seed{seed}", seed, print, overrides)
        results.append(r)
        print(f"seed {seed}: done in {r['seconds']:.0f} s", flush=True)
    names = sorted({n for r in results for n in r["annotators"]})
    head = f"{'seed':>4}  " + "  ".join(f"{n:>20}" for n in RUNS) + "  ratio  " + "  ".join(
        f"{'annotator ' + n:>20}" for n in names) + "  kept"
    print()
    if overrides:
        print("demo settings changed: " + ", ".join(f"{k}={v}" for k, v in overrides.items()))
    print("test MAE on the held-out toy test split (lower is better); ratio = promptmix / real-only")
    print(head)
    for r in results:
        ratio = r["mae"]["promptmix"] / r["mae"]["real-only"]
        r["ratio"] = ratio
        print(f"{r['seed']:>4}  " + "  ".join(f"{r['mae'][n]:>20.3f}" for n in RUNS) + f"  {ratio:5.3f}  "
              + "  ".join(f"{r['annotators'][n]:>20.3f}" for n in names) + f"  {r['kept']}/{r['rows']}")
    ratios = [r["ratio"] for r in results]
    mean = {n: sum(r["mae"][n] for r in results) / len(results) for n in RUNS}
    print("mean  " + "  ".join(f"{mean[n]:>20.3f}" for n in RUNS)
          + f"  {sum(ratios) / len(ratios):5.3f}")
    steps = results[0]["steps"]
    print(f"optimizer steps (seed {results[0]['seed']}): " + ", ".join(f"{n} {steps[n]}" for n in RUNS))
    ok = all(x <= GOAL for x in ratios)
    print(f"goal: promptmix / real-only <= {GOAL} on every seed: {'met' if ok else 'NOT met'} "
          f"(worst {max(ratios):.3f})")
    ctl = [r["mae"]["control"] / r["mae"]["real-only"] for r in results]
    print("control (ideal images, same annotators) / real-only per seed " + ", ".join(f"{x:.3f}" for x in ctl))
    unf = [r["mae"]["promptmix-unfiltered"] / r["mae"]["promptmix"] for r in results]
    print("filtering: unfiltered / filtered MAE per seed " + ", ".join(f"{x:.3f}" for x in unf)
          + " (above 1: filtering helped)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
