"""``promptmix caption`` and ``promptmix prompts``: captions of the real images, then the prompt bag."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import read_yaml_mapping
from ..errors import ConfigError

CAPTION_EPILOG = """\
Captions every image of the real dataset's train split with a transformers captioning model
(BLIP, BLIP-2, GIT, vision-encoder-decoder, ...) and writes RUN/captions/{captions,sources}.parquet
and info.json. Work is saved in chunks: rerun the same command to resume after an interruption.

examples:
  promptmix caption --real shtb --model Salesforce/blip-image-captioning-base --out run
  promptmix caption --real shtb --model Salesforce/blip2-opt-2.7b --revision main --out run --batch-size 32
  promptmix caption --real cifar10-small --model ./my-blip --out run --prompt "a photography of"
"""

PROMPTS_EPILOG = """\
Builds RUN/prompts (prompts.parquet, sources.parquet, info.json, config.yaml) from the captions in
RUN/captions and/or manual prompts. A final prompt is "<prefix>, <text>, <suffix>" (empty parts left
out; --separator changes ", "). Prompts with the same text and label are merged.

A bag that needs no captions (--no-captions; manual prompts, "{label}" templates) can be built from
the real dataset instead of a run folder (--real DIR --out RUN/prompts): the task, class names and
source images are read from the dataset, so nothing has to be captioned.

examples:
  promptmix prompts --run run --prefix "large crowd" --suffix grayscale
  promptmix prompts --run run --no-captions --manual "large crowd in [location]" \\
      --location "a train station" --location "a stadium"
  promptmix prompts --run run --class-template "a photo of a {label}" --class-template "{label}, {caption}"
  promptmix prompts --real cifar10 --out run/prompts --no-captions --class-template "a photo of a {label}"
  promptmix prompts --real nyu --out run/prompts --no-captions --manual "bedroom interior"
  promptmix prompts --run run --config prompts.yaml --tokenizer stabilityai/stable-diffusion-2-1-base
A --config YAML holds PromptBagConfig keys (or a run config with a `prompts:` section); flags override it.
"""


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "caption", help="caption the real training images (step 1 of generation)",
        description="Caption every training image of a real dataset with a captioning model.",
        epilog=CAPTION_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", required=True, help="real dataset folder (from `promptmix real ...`) or Hub dataset id")
    p.add_argument("--model", required=True, help="captioning model: Hub id or local folder")
    p.add_argument("--out", required=True, type=Path, help="run folder; captions go to OUT/captions")
    p.add_argument("--revision", help="model revision (branch, tag or commit)")
    p.add_argument("--real-revision", help="dataset revision when --real is a Hub id")
    p.add_argument("--split", default="train", help="split to caption (default: train)")
    p.add_argument("--batch-size", type=int, default=16, help="images per generate() call (default: 16)")
    p.add_argument("--chunk-size", type=int, default=512, help="images per resumable chunk (default: 512)")
    p.add_argument("--max-new-tokens", type=int, default=30, help="longest caption in tokens (default: 30)")
    p.add_argument("--num-beams", type=int, default=1, help="beam width (default: 1, greedy)")
    p.add_argument("--prompt", help="conditional text the captions start from, e.g. 'a photography of'")
    p.add_argument("--keep-prompt", action="store_true", help="keep --prompt at the start of each caption")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", help="auto (default: fp16 on CUDA, fp32 elsewhere), float32, float16, bfloat16")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow custom model code from the model repository (off by default)")
    p.set_defaults(func=run_caption)

    q = subparsers.add_parser(
        "prompts", help="build the prompt bag from captions and manual prompts (step 2)",
        description="Build the prompt bag: captions and manual prompts, with prefix, grayscale suffix and "
                    "class templates; deduplicated, each with a stable prompt_id.",
        epilog=PROMPTS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", type=Path, help="run folder (with captions/) or a captions folder")
    src.add_argument("--real", help="instead of --run: a real dataset (folder from `promptmix real ...` or Hub id) "
                                    "to read the task, class names and source images from; for bags that need "
                                    "no captions (--no-captions); needs --out")
    q.add_argument("--real-revision", help="dataset revision when --real is a Hub id")
    q.add_argument("--split", default="train", help="split of --real whose images are the sources (default: train)")
    q.add_argument("--config", type=Path, help="YAML with PromptBagConfig keys (or a run config with `prompts:`)")
    q.add_argument("--out", type=Path, help="output folder (default: RUN/prompts; required with --real)")
    q.add_argument("--prefix", help="text before every prompt, e.g. 'large crowd'")
    q.add_argument("--suffix", choices=("none", "grayscale"),
                   help="'grayscale': add --grayscale-suffix or --color-suffix from each source image")
    q.add_argument("--grayscale-suffix", help="default: 'black and white image'")
    q.add_argument("--color-suffix", help="default: 'color image'")
    q.add_argument("--separator", help="joins prefix, text and suffix (default: ', ')")
    q.add_argument("--manual", action="append", metavar="TEXT", help="a manual prompt (repeatable)")
    q.add_argument("--manual-file", type=Path, help="file of manual prompts, one per line (# comments skipped)")
    q.add_argument("--location", action="append", metavar="TEXT", help="a value of [location] (repeatable)")
    q.add_argument("--placeholder", action="append", metavar="NAME=VALUE",
                   help="a value of the [NAME] placeholder (repeatable), e.g. --placeholder room=kitchen")
    q.add_argument("--class-template", action="append", metavar="T",
                   help="classification: e.g. 'a photo of a {label}' or '{label}, {caption}' (repeatable)")
    q.add_argument("--no-captions", action="store_true", help="do not add the captions themselves as prompts")
    q.add_argument("--no-prefix-manual", action="store_true", help="do not put the prefix before manual prompts")
    q.add_argument("--no-dedupe", action="store_true", help="keep repeated prompts (each gets its own prompt_id)")
    q.add_argument("--max-prompts", type=int, help="keep a seeded random subset of this many prompts")
    q.add_argument("--seed", type=int, help="seed of the --max-prompts subset (default: 0)")
    q.add_argument("--tokenizer", help="tokenizer or diffusers pipeline (id or folder) to count prompts that will be "
                                       "truncated")
    q.add_argument("--tokenizer-revision", help="revision of --tokenizer when it is a Hub id")
    q.set_defaults(func=run_prompts)


def run_caption(args) -> int:
    from .captions import CaptionConfig, caption_dataset

    config = CaptionConfig(
        real=args.real, model=args.model, revision=args.revision, real_revision=args.real_revision, split=args.split,
        max_new_tokens=args.max_new_tokens, num_beams=args.num_beams, prompt=args.prompt,
        keep_prompt=args.keep_prompt, batch_size=args.batch_size, chunk_size=args.chunk_size, device=args.device,
        dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    out = caption_dataset(config, args.out)
    info = json.loads((out / "info.json").read_text(encoding="utf-8"))
    empty = info.get("empty_captions", 0)
    print(f"captioned {info['num_captions']} images of {args.real} (split {args.split}, task {info['task']}) "
          f"with {args.model} -> {out}" + (f"; {empty} empty captions" if empty else ""))
    return 0


def _prompt_config(args):
    from .prompts import PromptBagConfig

    data: dict = {}
    if args.config is not None:
        data = read_yaml_mapping(args.config, section="prompts")
    flags = {"prefix": args.prefix, "suffix": args.suffix, "grayscale_suffix": args.grayscale_suffix,
             "color_suffix": args.color_suffix, "separator": args.separator, "manual_file": args.manual_file,
             "max_prompts": args.max_prompts, "seed": args.seed}
    data.update({k: v for k, v in flags.items() if v is not None})
    if args.manual:
        data["manual"] = list(data.get("manual", [])) + args.manual
    if args.location:
        data["locations"] = list(data.get("locations", [])) + args.location
    if args.placeholder:
        ph = {k: list(v) for k, v in dict(data.get("placeholders", {})).items()}
        for item in args.placeholder:
            name, sep, value = item.partition("=")
            if not sep or not name.strip() or not value.strip():
                raise ConfigError(f"--placeholder: expected NAME=VALUE; got {item!r}")
            ph.setdefault(name.strip(), []).append(value.strip())
        data["placeholders"] = ph
    if args.class_template:
        data["class_templates"] = list(data.get("class_templates", [])) + args.class_template
    if args.no_captions:
        data["use_captions"] = False
    if args.no_prefix_manual:
        data["prefix_manual"] = False
    if args.no_dedupe:
        data["dedupe"] = False
    return PromptBagConfig.from_dict(data, section="prompts" if args.config is not None else "")


def run_prompts(args) -> int:
    from .prompts import build_prompt_bag, load_tokenizer

    config = _prompt_config(args)
    if args.real is not None and args.out is None:
        raise ConfigError("--out: required with --real (the prompt bag folder, e.g. run/prompts)")
    tokenizer = load_tokenizer(args.tokenizer, args.tokenizer_revision) if args.tokenizer else None
    out = build_prompt_bag(config, args.run, args.out, tokenizer=tokenizer, real=args.real,
                           real_revision=args.real_revision, real_split=args.split)
    c = json.loads((out / "info.json").read_text(encoding="utf-8"))["counts"]
    parts = [f"{c['caption']} from captions", f"{c['class']} from class templates", f"{c['manual']} manual",
             f"{c['template']} from [placeholder] templates"]
    extra = f"; {c['duplicates_merged']} duplicates merged"
    if c.get("empty_captions"):
        extra += f"; {c['empty_captions']} empty captions skipped"
    if c.get("dropped_by_max_prompts"):
        extra += f"; {c['dropped_by_max_prompts']} dropped by --max-prompts"
    if "truncated" in c:
        trunc = f"{c['truncated']} longer than {c['max_tokens']} tokens (will be truncated)"
    else:
        trunc = "truncation not checked (pass --tokenizer)"
    print(f"wrote {c['total']} prompt{'' if c['total'] == 1 else 's'} to {out} ({', '.join(parts)}{extra}); {trunc}")
    return 0
