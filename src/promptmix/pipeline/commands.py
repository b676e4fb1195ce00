"""``promptmix run CONFIG.yaml`` (the whole pipeline) and ``promptmix demo`` (the same, offline, tiny)."""

from __future__ import annotations

import argparse
import sys

from ..cli import Command
from ..stage import STAGES

RUN_EPILOG = f"""\
stages, in order (a section left out of the config is not run): {', '.join(STAGES)}

Every stage is cached by a hash of its settings and of the stages it reads: rerunning the same
command skips finished work; changing one section reruns that stage and the stages after it that
read it. A stage's outputs rewritten by hand (`promptmix filter RUN --keep 40` on this folder) are
noticed: the run stops and names the stale stages (docs/PIPELINE.md). An interrupted run (Ctrl-C, kill -9, a lost node) resumes where it stopped: generation
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
  promptmix run configs/promptmix_shtb.yaml --from annotate        # redo annotate and what reads it
  promptmix run configs/promptmix_shtb.yaml --set generate.images_per_prompt=2 --set run_dir=runs/try
  promptmix run configs/promptmix_shtb.yaml --check                # validate the config only
"""

DEMO_EPILOG = """\
The demo writes a toy crowd dataset in ShanghaiTech's raw layout (promptmix.toy.world: streets,
beaches, parks, snowfields and stadiums, a few to a few hundred people drawn with perspective, exact
head points, JPEG quality 75) and a pipeline config pointing at the toy world's trained models (a BLIP
captioner, a Stable Diffusion pipeline, a CSRNet- and a DM-Count-layout counter, shipped in the
package, trained on other toy scenes by scripts/train_toy_models.py); runs that config through
`promptmix run` (caption, prompt bag, generation, two annotators, filtering, publishing to a local
folder as version 0.1.0, ResCSRNet trained real-only and with PromptMix mixing, a report of the two);
and prints the test MAE of both, their ratio, each annotator's MAE on the same test images, and
where everything is. Offline, CPU, about a minute on 2 idle cores. The toy world checks that the
method works; it says nothing of how much PromptMix helps on real crowds.
--random-models runs the same pipeline with tiny random models in seconds (numbers meaningless).

examples:
  promptmix demo
  promptmix demo --out /tmp/demo
  promptmix demo --config-only --out my-demo     # write the data, models and config; run nothing
  promptmix demo --seed 1                        # another toy dataset (scripts/bench_toy_effect.py runs 3)
  promptmix demo --random-models                 # tiny random models: the mechanics only
  promptmix run my-demo/demo.yaml                # then run it yourself (cached after the first time)
"""


INIT_EPILOG = """\
Writes one of the papers' experiments (configs/) as your own config file: the paper's settings
(generator, sizes, steps, k, annotators, networks at full width, epochs, learning-rate grid; device
auto), with only the inputs left for you to provide. It then lists every input (raw dataset,
annotator checkpoints, backbone weights), whether it is there, and where to get it (docs/DATASETS.md),
and the Hub models downloaded on first use.

examples:
  promptmix init --list                               # the experiments and what each reproduces
  promptmix init shtb                                 # ./promptmix_shtb.yaml: PromptMix, ShanghaiTech B (Table I)
  promptmix init nyu-depth-v2 --data /datasets --checkpoints /weights --run-dir /scratch/nyu
  promptmix run promptmix_shtb.yaml --check           # then: every input in place?
"""


class InitCommand(Command):
    summary = "write a paper experiment's config (real settings) and list the files it needs"
    description = ("Write the config of one of the papers' experiments with the paper's settings, and list the "
                   "datasets and checkpoints to download (with links) before `promptmix run`.")
    examples = INIT_EPILOG

    def build_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("experiment", nargs="?", metavar="EXPERIMENT",
                            help="experiment name (shtb, shta, ucf-qnrf, nyu-depth-v2, panda-crowd, mvc-caltech101, "
                                 "...; --list shows all) or a config file")
        parser.add_argument("--list", action="store_true", help="list the experiments and stop")
        parser.add_argument("--out", metavar="FILE", help="config file to write (default: ./<config name>.yaml)")
        parser.add_argument("--data", metavar="DIR", help="folder holding the datasets (replaces the configs' data/)")
        parser.add_argument("--checkpoints", metavar="DIR",
                            help="folder holding the checkpoints (replaces the configs' checkpoints/)")
        parser.add_argument("--run-dir", metavar="DIR", help="run folder (default: the config's runs/NAME)")
        parser.add_argument("--force", action="store_true", help="replace an existing, different FILE")

    def __call__(self, args: argparse.Namespace) -> int:
        from .experiments import describe, experiments

        if args.list or not args.experiment:
            known = experiments()
            if not known:
                from ..errors import InputError

                raise InputError("the papers' configs come with the source checkout of promptmix (configs/); "
                                 "install from a clone with `pip install -e .`")
            width = max(len(n) for n in known)
            print("experiments (promptmix init NAME):")
            for name, path in known.items():
                print(f"  {name:<{width}}  {describe(path)}")
            return 0 if args.list else 2
        for line in init_experiment(args.experiment, out=args.out, data=args.data, checkpoints=args.checkpoints,
                                    run_dir=args.run_dir, force=args.force):
            print(line)
        return 0


def init_experiment(name: str, *, out: str | None = None, data: str | None = None, checkpoints: str | None = None,
                    run_dir: str | None = None, force: bool = False) -> list[str]:
    """Write experiment ``name``'s config (:func:`promptmix.pipeline.experiments.write_experiment`) and return
    what ``promptmix init`` prints: the file, the inputs with where to get them, the Hub models, the next commands."""
    from pathlib import Path

    from .experiments import DOCS, describe, find_experiment, hub_models, local_inputs, write_experiment

    path, config = write_experiment(name, out, data=data, checkpoints=checkpoints, run_dir=run_dir, force=force)
    source = find_experiment(name)
    lines = [f"wrote {path}: {describe(source)}",
             f"  run folder {config.run_dir}; {len(config.train)} training run(s): {', '.join(config.train) or '-'}"]
    inputs = local_inputs(config)
    if inputs:
        lines.append(f"inputs to provide (paths relative to {Path.cwd()}; what goes where: {DOCS}):")
        for item in inputs:
            lines.append(f"  [{'ok' if item.present else 'missing'}] {item.key}: {item.path}")
            if item.source is not None:
                lines.append(f"      {item.source.what}")
                lines.append(f"      get it: {item.source.url}")
                if item.source.how:
                    lines.append(f"      then: {item.source.how}")
    models = hub_models(config)
    if models:
        width = max(len(k) for k, _ in models)
        lines.append("downloaded from the Hugging Face Hub on first use (for an offline machine: `hf download ID` "
                     "beforehand, then HF_HUB_OFFLINE=1):")
        lines += [f"  {key:<{width}}  {ref}  (https://huggingface.co/{ref})" for key, ref in models]
    lines += ["then:",
              f"  promptmix run {path} --check     # every input in place?",
              f"  promptmix run {path} --plan      # what will run",
              f"  promptmix run {path}             # the whole experiment (GPU time and disk: docs/CONFIGS.md)"]
    return lines


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


class RunCommand(Command):
    summary = "run the whole pipeline from one YAML config (cached, resumable)"
    description = ("Run the whole pipeline from one YAML config: real dataset, captions, prompt bag, [MVC "
                   "fine-tuning], generation, annotation, filtering, [publishing], [training runs, report].")
    examples = RUN_EPILOG

    def build_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("config", metavar="CONFIG.yaml", help="pipeline config (see configs/ and docs/CONFIGS.md)")
        parser.add_argument("--until", metavar="STAGE", help="stop after this stage")
        parser.add_argument("--from", dest="from_stage", metavar="STAGE",
                            help="rerun this stage even if cached, and the later stages that read what it writes "
                                 "(the others stay cached; earlier stages must be up to date)")
        parser.add_argument("--plan", action="store_true", help="print what would run and what is cached; change "
                                                                "nothing")
        parser.add_argument("--check", action="store_true", help="validate the config and its input paths, then stop")
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                            help="override one config value (YAML syntax), e.g. --set generate.steps=20 (repeatable)")

    def __call__(self, args: argparse.Namespace) -> int:
        from .config import load_config
        from .engine import run_pipeline

        from ..errors import InputError
        from ..preflight import check_pipeline, report

        config = load_config(args.config, overrides=args.overrides)
        # every problem at once, before anything runs: missing inputs (with where to get them), then what the
        # pre-flight finds in the models, checkpoints and outputs that are there
        scope = "prompts" if args.plan else None if args.check else args.until
        missing = config.missing_inputs(scope)
        named = {m.key for m in missing}
        problems = [] if args.plan else [p for p in check_pipeline(config) if p.subject not in named]
        if missing or problems:
            raise InputError(f"{args.config}: " + "\n".join(
                m for m in (config.missing_inputs_message(missing), report(problems)) if m))
        if args.check:
            print(f"{args.config}: valid ({config.task}; run folder {config.run_dir}; "
                  f"{len(config.train)} training run(s))")
            return 0
        quiet_libraries(getattr(args, "verbose", 0))
        title = "plan" if args.plan else "run"
        print(f"promptmix {title}: {args.config} -> {config.run_dir}")
        run_pipeline(config, from_stage=args.from_stage, until_stage=args.until, plan_only=args.plan,
                     echo=lambda line: print(line, flush=True))
        if not args.plan:
            print(f"done; state in {config.run_folder.pipeline_state}")
        else:
            from ..errors import InputError

            try:
                config.check_inputs(args.until)
            except InputError as exc:  # the plan does not need them; the run will
                print(f"before it runs: {exc}")
        return 0


class DemoCommand(Command):
    summary = "the whole pipeline offline on CPU in the toy world, with its trained models (about a minute)"
    description = ("Run the whole pipeline end to end, offline, on CPU, in the toy world (promptmix.toy): procedural "
                   "crowds, and a generator, captioner and two counters trained on them by "
                   "scripts/train_toy_models.py; prints real-only against PromptMix on held-out toy images.")
    examples = DEMO_EPILOG

    def build_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", default="promptmix-demo", metavar="DIR",
                            help="folder for the demo's data, models, config and run (default ./promptmix-demo)")
        parser.add_argument("--config-only", action="store_true",
                            help="write the raw dataset, tiny models and demo.yaml, then stop")
        parser.add_argument("--epochs", type=int, default=None, metavar="N",
                            help="training epochs per run (default 40; 10 with --random-models)")
        parser.add_argument("--random-models", action="store_true",
                            help="tiny random models instead of the toy world's trained ones (seconds; the numbers "
                                 "mean nothing)")
        parser.add_argument("--toy-models", metavar="DIR", default=None,
                            help="the toy models in DIR (scripts/train_toy_models.py --out DIR) instead of the "
                                 "package's")
        parser.add_argument("--seed", type=int, default=None, metavar="N",
                            help="seed of the toy world's real data and of generation (default 0; below 1000)")

    def __call__(self, args: argparse.Namespace) -> int:
        from ..utils.progress import disable_progress_bars
        from .demo import DemoSettings, run_demo

        quiet_libraries(getattr(args, "verbose", 0))
        if not getattr(args, "verbose", 0):
            disable_progress_bars()  # every stage takes seconds here
        settings = DemoSettings.tiny_random() if args.random_models else DemoSettings()
        if args.toy_models:
            settings.toy_models_dir = args.toy_models
        if args.seed is not None:
            settings.seed = args.seed
        if args.epochs is not None:
            if args.epochs < 1:
                print("promptmix demo: error: --epochs: expected an integer >= 1", file=sys.stderr)
                return 2
            settings.epochs = args.epochs
        return run_demo(args.out, settings=settings, config_only=args.config_only,
                        echo=lambda line: print(line, flush=True))
