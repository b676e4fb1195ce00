"""``promptmix annotate`` and ``promptmix filter``."""

from __future__ import annotations

import argparse
from pathlib import Path

ANNOTATE_EPILOG = """\
SPEC forms:
  FOLDER_OR_HUB_ID        a counting folder (config.json with "architecture": csrnet|dmcount|sasnet
                          + model.safetensors), or a transformers depth-estimation, image-classification
                          or CLIP model (CLIP scores the class names zero-shot)
  ARCH=CHECKPOINT_FILE    an author's raw checkpoint: ARCH one of csrnet, dmcount, sasnet
                          (loaded with torch.load(weights_only=True), or a .safetensors file)
  clip-zeroshot=ID_OR_PATH
  NAME:SPEC               set the annotator's name (its folder RUN/annotations/NAME); names must be
                          unique in a run. Default: ARCH for ARCH=FILE, the folder / repo name otherwise.

examples:
  promptmix annotate run --annotator csrnet=CSRNet_B.pth.tar --annotator dmcount=model_qnrf.pth
  promptmix annotate run --annotator shta:sasnet=SHHA.pth --annotator shtb:sasnet=SHHB.pth
  promptmix annotate run --annotator Intel/dpt-large --annotator LiheYoung/depth-anything-small-hf
  promptmix annotate run --annotator my-org/resnet-cats --annotator clip-zeroshot=openai/clip-vit-base-patch32

Rerun the same command to resume: finished chunks are skipped. Under `accelerate launch` chunk c is
annotated by rank c % world_size.
"""

FILTER_EPILOG = """\
The quality score of a row is max_{j != j'} d(A_j, A_j') / max_j d(A_j, 0) over its annotators
(count difference for counting, mean absolute difference for depth, L1 between probability-scaled
one-hot predictions for classification). Rows whose annotations hold NaN/inf are flagged and never
kept. The output folder has configs 'kept' (default) and 'all' (every row, scores and flags).

examples:
  promptmix filter run --keep 60
  promptmix filter run --keep 40 --target mean --out run/fake-40
  promptmix filter run --keep 100 --target sasnet
Refiltering reads the stored annotations only: no model is loaded.
"""


def add_parsers(subparsers) -> None:
    """Register ``annotate`` and ``filter`` on the top-level ``promptmix`` parser."""
    p = subparsers.add_parser(
        "annotate", help="label a run's generated images with one or more annotator networks",
        description="Run every annotator over RUN/images and write RUN/annotations/<name>/ (resumable).",
        epilog=ANNOTATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, metavar="RUN", help="run folder (holds images/ from `promptmix generate`)")
    p.add_argument("--annotator", "-a", dest="annotators", action="append", required=True, metavar="SPEC",
                   help="an annotator (repeat for several); see SPEC forms below")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, else CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", default="auto",
                   help="auto (float16 on CUDA, float32 elsewhere), float32, float16, bfloat16")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) of Hub-id annotators")
    p.set_defaults(func=_annotate)

    f = subparsers.add_parser(
        "filter", help="score annotator agreement, keep the best rows, write the fake dataset",
        description="Compute quality scores from stored annotations, keep the lowest PERCENT %, and write the "
                    "fake dataset (Hub layout) to RUN/fake.",
        epilog=FILTER_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("run", type=Path, metavar="RUN", help="run folder with images/ and annotations/")
    f.add_argument("--keep", type=float, default=100.0, metavar="PERCENT",
                   help="keep the PERCENT %% of rows with the lowest quality score (default 100)")
    f.add_argument("--target", default="first", metavar="NAME|first|mean",
                   help="training target: the first annotator (default), a named one, or the mean of all")
    f.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default RUN/fake)")
    f.set_defaults(func=_filter)


def _annotate(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from .runner import annotate_run

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: expected an integer >= 1; got {args.batch_size}")
    report = annotate_run(args.run, args.annotators, batch_size=args.batch_size, device=args.device,
                          dtype=args.dtype, revision=args.revision)
    print(report.summary())
    return 0


def _filter(args: argparse.Namespace) -> int:
    from .filter import FilterConfig, filter_run

    report = filter_run(args.run, FilterConfig(keep_percent=args.keep, target=args.target, out=args.out))
    print(report.summary())
    return 0
