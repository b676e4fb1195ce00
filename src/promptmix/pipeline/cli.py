"""``promptmix run CONFIG.yaml`` (the whole pipeline) and ``promptmix demo`` (the same, offline, tiny)."""

from __future__ import annotations

import argparse
import sys

STAGES_TEXT = "real, caption, prompts, finetune, generate, annotate, filter, publish, train, report"

RUN_EPILOG = f"""\
stages, in order (a section left out of the config is not run): {STAGES_TEXT}

Every stage is cached by a hash of its settings and of the stages it reads: rerunning the same
command skips finished work; changing one section reruns that stage and the stages after it that
read it. An interrupted run (Ctrl-C, kill -9, a lost node) resumes where it stopped: generation
and annotation redo at most the chunks in flight, training continues from its last checkpoint.
Raising only finetune.max_train_steps (or epochs) continues the MVC fine-tuning from its last
checkpoint. State: RUN/pipeline/state.json. The config is validated before anything runs.

top-level keys of CONFIG.yaml (each section takes the keys of its stage's own command):
  run_dir   the run folder every stage writes into (RUN/)
  task      counting | depth | classification (read from real.builder when it can be)
  real      builder: shanghaitech | ucf-qnrf | nyu-depth-v2 | imagefolder | hub | folder, + its paths
  caption   `promptmix caption` keys (model, max_new_tokens, ...); real is wired. Leave it out when no
            prompt needs captions (use_captions: false): the prompt bag then reads the real dataset
  prompts   `promptmix prompts` keys (prefix, suffix, manual, locations, class_templates, ...)
  finetune  MVC fine-tuning keys (training/finetune_mvc.py); generate then uses its pipeline, and its
            coarse, fine, fine_max_span, caption_prefix, prefix_separator fill generate.mvc
  generate  `promptmix generate` keys (model, images_per_prompt, steps, size, mvc, ...); prompts is wired
  annotate  annotators: [SPEC, ...] as `promptmix annotate --annotator SPEC`
  filter    `promptmix filter` keys (keep_percent, target)
  publish   `promptmix publish` keys (repo_id, version, push, local_dir, ...)
  train     named runs, each with `training/train_*.py` keys (model, mixing, r_mix, epochs, lr, ...);
            task, real, fake and output_dir (RUN/train/NAME) are wired
  report    baseline: NAME (optional). With two or more training runs, RUN/report/report.md compares
            them with their real-only baseline (`promptmix report`)

examples:
  promptmix run configs/promptmix_shtb.yaml
  promptmix run configs/promptmix_shtb.yaml --plan                 # what would run, what is cached
  promptmix run configs/promptmix_shtb.yaml --until prompts        # look at the prompts first
  promptmix run configs/promptmix_shtb.yaml --from annotate        # redo annotate and what follows
  promptmix run configs/promptmix_shtb.yaml --set generate.images_per_prompt=2 --set run_dir=runs/try
  promptmix run configs/promptmix_shtb.yaml --check                # validate the config only
"""

DEMO_EPILOG = """\
The demo writes a small crowd dataset in ShanghaiTech's raw layout (people drawn procedurally,
exact head points, JPEG quality 75), tiny random-weight models (a captioner, a Stable Diffusion
pipeline, two crowd counters), and a pipeline config pointing at them; runs that config through
`promptmix run` (caption, prompt bag, generation, two annotators, filtering, publishing to a local
folder as version 0.1.0, ResCSRNet trained real-only and with PromptMix mixing, a report of the
two); and prints the report's table and where everything is. The models are random stand-ins: the numbers mean nothing,
the pipeline around them is the real one. Offline, CPU, under 3 minutes on 2 cores.

examples:
  promptmix demo
  promptmix demo --out /tmp/demo
  promptmix demo --config-only --out my-demo     # write the data, models and config; run nothing
  promptmix run my-demo/demo.yaml                # then run it yourself (cached after the first time)
"""


def add_parsers(subparsers) -> None:
    """Register ``run`` and ``demo`` on the top-level ``promptmix`` parser."""
    p = subparsers.add_parser(
        "run", help="run the whole pipeline from one YAML config (cached, resumable)",
        description="Run the whole pipeline from one YAML config: real dataset, captions, prompt bag, "
                    "[MVC fine-tuning], generation, annotation, filtering, [publishing], [training runs, report].",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="CONFIG.yaml", help="pipeline config (see configs/ and docs/CONFIGS.md)")
    p.add_argument("--until", metavar="STAGE", help="stop after this stage")
    p.add_argument("--from", dest="from_stage", metavar="STAGE",
                   help="rerun this stage and every later one even if cached (earlier stages must be up to date)")
    p.add_argument("--plan", action="store_true", help="print what would run and what is cached; change nothing")
    p.add_argument("--check", action="store_true", help="validate the config and its input paths, then stop")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override one config value (YAML syntax), e.g. --set generate.steps=20 (repeatable)")
    p.set_defaults(func=run_command)

    d = subparsers.add_parser(
        "demo", help="the whole pipeline offline on CPU with tiny models (under 3 minutes)",
        description="Run the whole pipeline end to end, offline, on CPU, with tiny random models.",
        epilog=DEMO_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--out", default="promptmix-demo", metavar="DIR",
                   help="folder for the demo's data, models, config and run (default ./promptmix-demo)")
    d.add_argument("--config-only", action="store_true",
                   help="write the raw dataset, tiny models and demo.yaml, then stop")
    d.add_argument("--epochs", type=int, default=None, metavar="N", help="training epochs per run (default 10)")
    d.set_defaults(func=demo_command)


def quiet_libraries(verbose: int = 0) -> None:
    """Silence the progress bars and warnings of datasets / transformers / diffusers / huggingface_hub
    (promptmix's own bars stay); ``-v`` keeps them."""
    if verbose:
        return
    import datasets
    import diffusers
    import huggingface_hub
    import transformers

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    huggingface_hub.utils.disable_progress_bars()


def run_command(args) -> int:
    from .config import load_config
    from .runner import run_pipeline

    config = load_config(args.config, overrides=args.overrides)
    config.check_inputs()
    if args.check:
        print(f"{args.config}: valid ({config.task}; run folder {config.run_dir}; "
              f"{len(config.train)} training run(s))")
        return 0
    quiet_libraries(getattr(args, "verbose", 0))
    title = "plan" if args.plan else "run"
    print(f"promptmix {title}: {args.config} -> {config.run_dir}")
    result = run_pipeline(config, from_stage=args.from_stage, until_stage=args.until, plan_only=args.plan,
                          echo=lambda line: print(line, flush=True))
    if not args.plan:
        print(f"done; state in {result.run_dir}/pipeline/state.json")
    return 0


def demo_command(args) -> int:
    from ..utils.progress import disable_progress_bars
    from .demo import DemoSettings, run_demo

    quiet_libraries(getattr(args, "verbose", 0))
    if not getattr(args, "verbose", 0):
        disable_progress_bars()  # every stage takes seconds here
    settings = DemoSettings()
    if args.epochs is not None:
        if args.epochs < 1:
            print("promptmix demo: error: --epochs: expected an integer >= 1", file=sys.stderr)
            return 2
        settings.epochs = args.epochs
    return run_demo(args.out, settings=settings, config_only=args.config_only,
                    echo=lambda line: print(line, flush=True))
