"""``promptmix filter-prompts``: PromptMix's optional prompt filtering (its training settings are TrainConfig's)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import Command

_SKIP = ("task", "output_dir", "epochs", "mixing", "resume", "overwrite")


class FilterPromptsCommand(Command):
    summary = "drop prompts whose fake images make the validation error worse"
    description = ("PromptMix prompt filtering: train with each prompt's fake rows alone (plus the real rows), "
                   "compare the validation error with a real-only baseline, drop the prompts that make it worse, and "
                   "write the kept prompts and the filtered fake dataset.")
    examples = """\
examples:
  promptmix filter-prompts --task counting --real shtb --fake run/fake --model rescsrnet --lr 1e-4 \\
      --r-mix 500 --epochs-per-prompt 20 --out run/prompt-filter
  # Table VII, prompt filtering, after `promptmix run configs/promptmix_ten_locations.yaml` (its header):
  promptmix filter-prompts --task counting --real runs/promptmix_ten_locations/real \
      --fake runs/promptmix_ten_locations/fake --model rescsrnet --pretrained imagenet --lr 1e-4 \
      --batch-size 32 --r-mix 500 --out runs/promptmix_ten_locations/prompt-filter
  promptmix filter-prompts --config train.yaml --task counting --max-prompts 10 --out pf   # train.yaml: TrainConfig keys

Writes OUT/prompt_filter.json, OUT/kept_prompts.txt and OUT/fake/ (configs kept and all). Every run gets
--epochs-per-prompt epochs; without --lr the baseline searches --lr-grid and the prompt runs reuse its choice.
Rerun the same command to resume: finished runs are reused. The test split is never used.
"""

    def build_parser(self, parser: argparse.ArgumentParser) -> None:
        from ..cli_args import add_config_arguments
        from ..schema import TASKS
        from .prompt_filter.config import PromptFilterConfig
        from .train.config import TrainConfig

        parser.add_argument("--task", required=True, choices=TASKS, help="counting, depth or classification")
        parser.add_argument("--out", dest="filter_out", required=True, help="output folder")
        parser.add_argument("--config", metavar="YAML", help="YAML file of training settings; flags override it")
        add_config_arguments(parser, PromptFilterConfig, skip=("training", "output_dir"))
        add_config_arguments(parser, TrainConfig, skip=_SKIP, group_title="training settings (TrainConfig)")

    def __call__(self, args: argparse.Namespace) -> int:
        from ..cli_args import config_from_args
        from .prompt_filter.config import PromptFilterConfig
        from .prompt_filter.filtering import filter_prompts
        from .train.config import TrainConfig

        # each run sets its own output folder; this one only satisfies the config's check
        training = config_from_args(TrainConfig, args, overrides={
            "task": args.task, "output_dir": str(Path(args.filter_out) / "baseline")})
        given = vars(args)
        config = PromptFilterConfig(training=training, output_dir=str(args.filter_out),
                                    **{k: given[k] for k in ("epochs_per_prompt", "tolerance", "max_prompts")
                                       if k in given})
        result = filter_prompts(config)
        key = result["metric"]
        print(f"baseline {key} {result['baseline']:.4f} (lr {result['lr']})")
        for r in result["prompts"]:
            value = r[key.split("/", 1)[1]]
            state = "kept   " if r["kept"] else "DROPPED"
            shown = "untested" if value is None else f"{value:.4f}"
            print(f"{state} {shown:>10}  {r['rows']:>5} rows  {r['prompt']}")
        print(f"kept {result['kept']}, dropped {result['dropped']}; wrote {args.filter_out}/fake, "
              f"{args.filter_out}/kept_prompts.txt, {args.filter_out}/prompt_filter.json")
        return 0
