"""``promptmix demo``: the whole pipeline offline, on CPU, in about a minute, in the learned toy world.

It writes, under ``OUT/``::

    raw/part_B/...   a crowd dataset in ShanghaiTech's raw layout: toy-world scenes (promptmix.toy.world:
                     places, densities, colour and black and white, perspective, exact head points, JPEG 75)
    demo.yaml        the pipeline config, pointing at the toy world's trained models (promptmix.toy.models:
                     a Stable Diffusion pipeline, a BLIP captioner, a CSRNet- and a DM-Count-layout counter,
                     shipped in the package and checked against their manifest)
    run/             the run folder of `promptmix run demo.yaml`: real/, captions/, prompts/, images/,
                     annotations/ (with real_eval.json: each annotator on the real test split), fake/,
                     publish/ (the dataset repo, version 0.1.0), train/{real-only,promptmix}/, report/

and runs ``demo.yaml`` through the same runner as ``promptmix run``, then prints the report stage's table
(:mod:`promptmix.training.report`), the effect (PromptMix's test MAE over real-only's) and each annotator's
MAE on the test images. ``DemoSettings.tiny_random()`` (``--random-models``) is the older demo: tiny random
models written under ``OUT/models`` (promptmix.testing.save_tiny_models) and plain procedural crowds; its
numbers mean nothing. Running the demo again reuses what is there (every stage is cached).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from ..run_folder import RunFolder

REAL_MODELS = {
    "caption.model": "Salesforce/blip-image-captioning-base",
    "generate.model": "stabilityai/stable-diffusion-2-1-base",
    "annotate.annotators": "[sasnet=checkpoints/SASNet_SHHB.pth]   # SASNet's released SHHB.pth (docs/DATASETS.md)",
}
#: the demo's settings are toy-sized (4 steps, 160 px, width_div 4, 10 epochs, cpu): a real run starts from this
REAL_RUN = ("for a real run with the paper's settings (SD at the source size, 50 steps, k = 10, full-width "
            "networks, 500 epochs, device auto), write the experiment's config and see the files it needs:",
            "  promptmix init shtb            # -> promptmix_shtb.yaml, with links to ShanghaiTech and the SASNet "
            "checkpoint",
            "  promptmix init --list          # every paper experiment (ShanghaiTech A/B, UCF-QNRF, PANDA, NYU, MVC)")
#: beside demo.yaml: the hash of the text the demo wrote, so an edited demo.yaml is told from an old generated one
WRITTEN_HASH = ".demo.yaml.sha256"


@dataclasses.dataclass
class DemoSettings:
    """Sizes of the demo. The defaults are the learned toy world's (about a minute on 2 CPU cores);
    :meth:`tiny_random` gives the tiny random models' (``promptmix demo --random-models``)."""

    random_models: bool = False  # True: tiny random stand-ins (promptmix.testing), numbers meaningless
    n_train: int = 24  # real training images (the builder moves validation_fraction of them into validation)
    validation_fraction: float | None = 0.25  # None: the builder's default (10 % for part B)
    n_test: int = 40
    size: tuple[int, int] = (128, 96)  # (W, H) of the real images (the toy models are trained at 128x96)
    images_per_prompt: int = 8  # k
    steps: int = 20  # denoising steps
    guidance_scale: float | None = 3.0  # None: the pipeline's default
    keep_percent: float = 75.0  # r_img
    target: str = "mean"  # the fake rows' training target: an annotator's name, or the annotators' mean
    r_mix: int = 48  # fake rows drawn afresh every epoch
    epochs: int = 40
    lr: float = 3e-4
    batch_size: int = 4
    crop_size: int | None = None
    seed: int = 0  # of the real data (toy-world scenes) and of generation; must stay below 1000 (toy models)
    toy_models_dir: str | None = None  # another folder written by scripts/train_toy_models.py --out DIR

    @classmethod
    def tiny_random(cls, **overrides: Any) -> "DemoSettings":
        """The tiny random models' demo (the demo before the toy models existed)."""
        base = dict(random_models=True, n_train=24, validation_fraction=None, n_test=8, size=(160, 120), images_per_prompt=3, steps=4,
                    guidance_scale=None, keep_percent=75.0, target="counter-a", r_mix=16, epochs=10, lr=1e-3,
                    batch_size=2, crop_size=64)
        base.update(overrides)
        return cls(**base)

    def raw_stamp(self) -> dict:
        """What decides the raw dataset (a raw folder written with other values is written again)."""
        return {"world": "random" if self.random_models else "toy", "n_train": self.n_train, "n_test": self.n_test,
                "size": list(self.size), "seed": self.seed}


def demo_config(out: Path, models: dict[str, Path], raw: Path, s: DemoSettings) -> dict[str, Any]:
    """The demo's pipeline config (absolute paths, so it runs from anywhere)."""
    train_common = {"model": "rescsrnet", "width_div": 4, "epochs": s.epochs, "lr": s.lr, "batch_size": s.batch_size,
                    "crop_size": s.crop_size, "seed": 42, "report_to": "none", "cpu": True}
    if train_common["crop_size"] is None:
        del train_common["crop_size"]
    max_side = max(s.size)
    generate = {"model": str(models["sd"]), "images_per_prompt": s.images_per_prompt, "steps": s.steps,
                "max_side": max_side, "seed": s.seed, "chunk_size": 8, "batch_size": 4, "device": "cpu"}
    if s.guidance_scale is not None:
        generate["guidance_scale"] = s.guidance_scale
    if s.random_models:
        caption = {"model": str(models["captioner"]), "max_new_tokens": 8, "batch_size": 8}
        prompts = {"prefix": "large crowd", "suffix": "grayscale"}
        notice = "Made by `promptmix demo` with tiny random models: the images and labels are noise."
    else:
        # the toy captions already name the density and black and white / colour (promptmix.toy.world)
        caption = {"model": str(models["captioner"]), "max_new_tokens": 16, "batch_size": 16}
        prompts = {}
        generate.update(chunk_size=16, batch_size=8)
        notice = ("Made by `promptmix demo` in the toy world (promptmix.toy): procedural crowds, and models "
                  "trained on them by scripts/train_toy_models.py. A working-order check of the method, not "
                  "real data.")
    return {
        "run_dir": str(out / "run"),
        "task": "counting",
        "real": {"builder": "shanghaitech", "root": str(raw), "part": "B",
                 **({"options": {"validation_fraction": s.validation_fraction}}
                    if s.validation_fraction is not None else {})},
        "caption": caption,
        "prompts": prompts,
        "generate": generate,
        "annotate": {"annotators": [f"counter-a:{models['counter_a']}", f"counter-b:{models['counter_b']}"],
                     "batch_size": 8, "device": "cpu", **({} if s.random_models else {"evaluate_split": "test"})},
        "filter": {"keep_percent": s.keep_percent, "target": s.target},
        "publish": {"repo_id": "local/promptmix-demo", "version": "0.1.0", "push": False,
                    "local_dir": str(RunFolder(out / "run").publish), "notice": notice},
        "train": {
            "real-only": {**train_common, "mixing": "none"},
            "promptmix": {**train_common, "mixing": "promptmix", "r_mix": s.r_mix},
        },
    }


HEADER = """\
# promptmix demo: the whole pipeline {what} (offline, CPU).
# Run it again with:   promptmix run {path}
# Edit it freely: `promptmix demo` keeps an edited demo.yaml (delete it to get this one back).
# The models can be swapped one line each, e.g.
#   caption:  model: Salesforce/blip-image-captioning-base
#   generate: model: stabilityai/stable-diffusion-2-1-base
#   annotate: annotators: [sasnet=checkpoints/SASNet_SHHB.pth]   (SASNet's released SHHB.pth)
# but the sizes here are toy ones ({steps} steps, max_side {max_side}, width_div 4, {epochs} epochs, cpu). For a
# real run with the paper's settings:  promptmix init shtb   (writes promptmix_shtb.yaml and lists the files it
# needs with links, docs/DATASETS.md).
"""


def demo_models(out: Path, s: DemoSettings) -> dict[str, Path]:
    """The demo's models: the toy world's trained ones (shipped in the package, checked against their manifest),
    or tiny random ones written under ``OUT/models``."""
    if s.random_models:
        from ..testing import save_tiny_models

        return save_tiny_models(out / "models", keys=("sd", "captioner", "counter_a", "counter_b"), seed=s.seed)
    from ..toy.models import toy_models

    if not 0 <= s.seed < 1000:
        from ..errors import ConfigError

        raise ConfigError(f"seed: expected 0 <= seed < 1000 for the toy world (the toy models were trained on "
                          f"scene seeds >= 1000, so the demo's data are never their training data); got {s.seed}")
    return toy_models(s.toy_models_dir) if s.toy_models_dir else toy_models()


def write_raw(raw: Path, s: DemoSettings) -> None:
    """The real dataset in ShanghaiTech's raw layout: toy-world scenes, or the testing kit's plain crowds."""
    from ..utils.io import atomic_path, write_text_atomic
    from ..utils.outputs import guard_output, remove_stale_beside, write_marker

    stamp = raw / ".demo-raw.json"
    wanted = json.dumps(s.raw_stamp(), sort_keys=True)
    if (raw / "part_B" / "test_data" / "ground-truth").is_dir() and stamp.is_file() \
            and stamp.read_text(encoding="utf-8").strip() == wanted:
        return
    guard_output(raw, "demo", force_flag=None)  # a folder `raw` of the user's own is never replaced
    remove_stale_beside(raw, "promptmix demo")
    with atomic_path(raw) as tmp:
        if s.random_models:
            from ..testing.raw_datasets import write_shanghaitech_raw

            write_shanghaitech_raw(tmp, part="B", n_train=s.n_train, n_test=s.n_test, size=s.size, seed=s.seed,
                                   quality=75)
        else:
            from ..toy.world import WorldSettings, write_toy_shanghaitech

            write_toy_shanghaitech(tmp, n_train=s.n_train, n_test=s.n_test, seed=s.seed,
                                   settings=WorldSettings(size=tuple(s.size)))
        write_marker(tmp, "demo")
        write_text_atomic(tmp / stamp.name, wanted + "\n")


def write_demo_inputs(out: str | Path, settings: DemoSettings | None = None) -> Path:
    """Write (or find) the models, the raw crowd dataset and ``OUT/demo.yaml``; returns the config path."""
    from ..utils.io import write_text_atomic

    s = settings or DemoSettings()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    models = demo_models(out, s)
    raw = out / "raw"
    write_raw(raw, s)
    path = out / "demo.yaml"
    what = "with tiny random models" if s.random_models else "in the toy world, with its trained models"
    text = HEADER.format(path=path, what=what, steps=s.steps, max_side=max(s.size), epochs=s.epochs) \
        + yaml.safe_dump(demo_config(out, models, raw, s), sort_keys=False)
    if not edited_config(path):
        write_text_atomic(path, text)
        write_text_atomic(out / WRITTEN_HASH, sha256_text(text) + "\n")
    return path


def sha256_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def edited_config(path: Path) -> bool:
    """``demo.yaml`` exists and is not the text the demo last wrote there (the user edited it)."""
    if not path.is_file():
        return False
    stamp = path.parent / WRITTEN_HASH
    written = stamp.read_text(encoding="utf-8").strip() if stamp.is_file() else None
    return sha256_text(path.read_text(encoding="utf-8")) != written


def effect_lines(run: RunFolder, records: dict) -> list[str]:
    """The effect in one line (PromptMix's test MAE over real-only's) and each annotator's MAE on the test split."""
    from ..annotation.evaluate import eval_lines, read_real_eval

    out = []
    try:
        base = json.loads((run.train_run("real-only") / "metrics.json").read_text())["test/mae"]
        mix = json.loads((run.train_run("promptmix") / "metrics.json").read_text())["test/mae"]
    except (OSError, KeyError, ValueError):
        return out
    verdict = "better" if mix < base else "worse" if mix > base else "the same"
    out.append(f"effect: PromptMix test MAE {mix:.2f} vs real-only {base:.2f}: ratio {mix / base:.3f} ({verdict})")
    if mix / base > 0.95:
        out.append("  no clear gain: in the toy world the toy generator's blurry images are what limits PromptMix; with "
                   "ideal images and the same annotators the gain is there (README, 'The demo'; "
                   "scripts/bench_toy_effect.py runs that control)")
    record = read_real_eval(run)
    if record:
        out += ["  " + line for line in eval_lines(record)]
    return out


def run_demo(out: str | Path = "promptmix-demo", *, settings: DemoSettings | None = None, config_only: bool = False,
             echo: Callable[[str], None] = print) -> int:
    """Write the demo's inputs, run them through ``promptmix run``, print the results. Returns an exit code."""
    from .config import load_config
    from .engine import run_pipeline

    t0 = time.perf_counter()
    out = Path(out).resolve()
    s = settings or DemoSettings()
    if s.random_models:
        echo("promptmix demo: the whole pipeline, offline, on CPU, with TINY RANDOM models.")
        echo("  The models are random stand-ins, so the images, labels and numbers below mean nothing;")
        echo("  everything around them (caching, resume, schema, card, publishing, training) is the real code.")
        echo(f"writing tiny models, a ShanghaiTech-style raw dataset and the config under {out} ...")
    else:
        echo("promptmix demo: the whole pipeline, offline, on CPU, in the toy world (promptmix.toy).")
        echo("  Procedural crowds with exact head points; a small Stable Diffusion pipeline, a BLIP captioner and")
        echo("  two counters (CSRNet and DM-Count layout) trained on other toy scenes by scripts/train_toy_models.py.")
        echo("  It checks that the method works as the paper says (a student trained on real + generated images")
        echo("  beats one trained on the real images alone), not how much it helps on real data.")
        echo(f"writing a toy crowd dataset in ShanghaiTech's raw layout and the config under {out} ...")
    kept = edited_config(out / "demo.yaml")
    config_path = write_demo_inputs(out, s)
    echo(f"  config: {config_path}" + ("  (your edited version, kept; delete it to get the demo's own back)"
                                        if kept else ""))
    if config_only:
        echo(f"run it with:  promptmix run {config_path}")
        return 0
    config = load_config(config_path)
    echo(f"promptmix run {config_path}")
    result = run_pipeline(config, echo=echo)
    seconds = time.perf_counter() - t0

    run = config.run_folder
    publish_dir = config.publish_dir
    echo("")
    from ..training.report.report import compare_runs

    comparison = compare_runs(**config.report_arguments())
    if s.random_models:
        echo("results (tiny random models, so the numbers are meaningless):")
        echo(comparison.table())
    else:
        echo(f"results on the held-out toy test split ({s.n_test} images the models never saw):")
        echo(comparison.table())
        for line in effect_lines(run, result.records):
            echo(line)
    filt = result.records.get("filter", {})
    if filt:
        echo(f"fake dataset: {filt.get('kept')} of {filt.get('rows')} generated images kept "
             f"(keep {config.filter.keep_percent:g}% by quality score), target {filt.get('target')}")
    echo("")
    echo("where everything is:")
    paths = [("dataset card", publish_dir / "README.md"),
             ("sample grid", publish_dir / "assets" / "samples.png"),
             ("published dataset (v0.1.0)", publish_dir),
             ("fake dataset", config.fake_out),
             ("report", config.report_out / "report.md"),
             ("metrics", run.train_run("real-only") / "metrics.json"),
             ("", run.train_run("promptmix") / "metrics.json"),
             ("run state", run.pipeline_state),
             ("config", config_path)]
    for label, path in paths:
        mark = "" if path.exists() else "  (missing)"
        echo(f"  {label:<27} {path}{mark}")
    echo("")
    echo("to try real models in this toy config, change one line per model, e.g.:")
    for key, value in REAL_MODELS.items():
        echo(f"  {key}: {value}")
    for line in REAL_RUN:
        echo(line)
    echo(f"demo finished in {seconds:.0f} s")
    (run.pipeline / "demo-summary.json").write_text(
        json.dumps({"seconds": round(seconds, 1), "records": result.records}, indent=2, default=str) + "\n")
    return 0
