"""``promptmix demo``: the whole pipeline offline, on CPU, in a few minutes, with tiny random models.

It writes, under ``OUT/``::

    models/          tiny random models in their real save formats (promptmix.testing.save_tiny_models)
    raw/part_B/...   a small crowd dataset in ShanghaiTech's raw layout (procedural people, exact head points,
                     JPEG quality 75; promptmix.testing.raw_datasets.write_shanghaitech_raw)
    demo.yaml        the pipeline config pointing at them
    run/             the run folder of `promptmix run demo.yaml`: real/, captions/, prompts/, images/,
                     annotations/, fake/, publish/ (the dataset repo, version 0.1.0), train/{real-only,promptmix}/,
                     report/ (the runs against the real-only baseline: report.md and two PNGs)

and runs ``demo.yaml`` through the same runner as ``promptmix run``, then prints the report stage's table
(:mod:`promptmix.training.report`, as ``promptmix report`` prints it). Running the demo again reuses
what is there (every stage is cached).
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
    """Sizes of the demo (chosen to finish in well under 3 minutes on 2 CPU cores)."""

    n_train: int = 24  # real training images (the builder moves some into the validation split)
    n_test: int = 8
    size: tuple[int, int] = (160, 120)  # (W, H) of the real images
    images_per_prompt: int = 3  # k
    steps: int = 4  # denoising steps of the tiny generator
    keep_percent: float = 75.0  # r_img
    r_mix: int = 16  # fake rows drawn afresh every epoch
    epochs: int = 10
    lr: float = 1e-3
    seed: int = 0


def demo_config(out: Path, models: dict[str, Path], raw: Path, s: DemoSettings) -> dict[str, Any]:
    """The demo's pipeline config (absolute paths, so it runs from anywhere)."""
    train_common = {"model": "rescsrnet", "width_div": 4, "epochs": s.epochs, "lr": s.lr, "batch_size": 2,
                    "crop_size": 64, "seed": 42, "report_to": "none", "cpu": True}
    return {
        "run_dir": str(out / "run"),
        "task": "counting",
        "real": {"builder": "shanghaitech", "root": str(raw), "part": "B"},
        "caption": {"model": str(models["captioner"]), "max_new_tokens": 8, "batch_size": 8},
        "prompts": {"prefix": "large crowd", "suffix": "grayscale"},
        "generate": {"model": str(models["sd"]), "images_per_prompt": s.images_per_prompt, "steps": s.steps,
                     "max_side": 160, "seed": s.seed, "chunk_size": 8, "batch_size": 4, "device": "cpu"},
        "annotate": {"annotators": [f"counter-a:{models['counter_a']}", f"counter-b:{models['counter_b']}"],
                     "batch_size": 8, "device": "cpu"},
        "filter": {"keep_percent": s.keep_percent, "target": "counter-a"},
        "publish": {"repo_id": "local/promptmix-demo", "version": "0.1.0", "push": False,
                    "local_dir": str(RunFolder(out / "run").publish),
                    "notice": "Made by `promptmix demo` with tiny random models: the images and labels are noise."},
        "train": {
            "real-only": {**train_common, "mixing": "none"},
            "promptmix": {**train_common, "mixing": "promptmix", "r_mix": s.r_mix},
        },
    }


HEADER = """\
# promptmix demo: the whole pipeline with tiny random models (offline, CPU).
# Run it again with:   promptmix run {path}
# Edit it freely: `promptmix demo` keeps an edited demo.yaml (delete it to get this one back).
# The models can be swapped one line each, e.g.
#   caption:  model: Salesforce/blip-image-captioning-base
#   generate: model: stabilityai/stable-diffusion-2-1-base
#   annotate: annotators: [sasnet=checkpoints/SASNet_SHHB.pth]   (SASNet's released SHHB.pth)
# but the sizes here are toy ones (4 steps, max_side 160, width_div 4, 10 epochs, cpu). For a real run with the
# paper's settings:  promptmix init shtb   (writes promptmix_shtb.yaml and lists the files it needs with links,
# docs/DATASETS.md).
"""


def write_demo_inputs(out: str | Path, settings: DemoSettings | None = None) -> Path:
    """Write the tiny models, the raw crowd dataset and ``OUT/demo.yaml``; returns the config path."""
    from ..testing import save_tiny_models
    from ..testing.raw_datasets import write_shanghaitech_raw
    from ..utils.io import atomic_path, write_text_atomic

    s = settings or DemoSettings()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    models = save_tiny_models(out / "models", keys=("sd", "captioner", "counter_a", "counter_b"), seed=s.seed)
    raw = out / "raw"
    if not (raw / "part_B" / "test_data" / "ground-truth").is_dir():
        from ..utils.outputs import guard_output, remove_stale_beside, write_marker

        guard_output(raw, "demo", force_flag=None)  # a folder `raw` of the user's own is never replaced
        remove_stale_beside(raw, "promptmix demo")
        with atomic_path(raw) as tmp:
            write_shanghaitech_raw(tmp, part="B", n_train=s.n_train, n_test=s.n_test, size=s.size, seed=s.seed,
                                   quality=75)
            write_marker(tmp, "demo")
    path = out / "demo.yaml"
    text = HEADER.format(path=path) + yaml.safe_dump(demo_config(out, models, raw, s), sort_keys=False)
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


def run_demo(out: str | Path = "promptmix-demo", *, settings: DemoSettings | None = None, config_only: bool = False,
             echo: Callable[[str], None] = print) -> int:
    """Write the demo's inputs, run them through ``promptmix run``, print the results. Returns an exit code."""
    from .config import load_config
    from .engine import run_pipeline

    t0 = time.perf_counter()
    out = Path(out).resolve()
    echo("promptmix demo: the whole pipeline, offline, on CPU, with TINY RANDOM models.")
    echo("  The models are random stand-ins, so the images, labels and numbers below mean nothing;")
    echo("  everything around them (caching, resume, schema, card, publishing, training) is the real code.")
    echo(f"writing tiny models, a ShanghaiTech-style raw dataset and the config under {out} ...")
    kept = edited_config(out / "demo.yaml")
    config_path = write_demo_inputs(out, settings)
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
    echo("results (tiny random models, so the numbers are meaningless):")
    from ..training.report.report import compare_runs

    echo(compare_runs(**config.report_arguments()).table())
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
