"""``promptmix real shanghaitech|ucf-qnrf|nyu-depth-v2|imagefolder|hub`` and ``promptmix jpeg-quality``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REAL_EPILOG = """\
Each builder writes OUT/README.md (YAML configs) and OUT/data/{train,validation,test}-*.parquet, which
`datasets.load_dataset(OUT)` reads back. OUT is built under a temporary name and moved into place at the end.

examples:
  promptmix real shanghaitech --root data/ShanghaiTech --part B --out data/shtb
  promptmix real ucf-qnrf --root data/UCF-QNRF_ECCV18 --out data/ucf-qnrf
  promptmix real nyu-depth-v2 --mat data/nyu_depth_v2_labeled.mat --out data/nyu
  promptmix real imagefolder --root data/caltech101/101_ObjectCategories --out data/caltech101
  promptmix real hub --dataset uoft-cs/cifar100 --image-column img --label-column fine_label --reduced 4000 --out data/c100r
"""

_BAD = ("--skip-bad", "leave out bad items (missing/corrupt images, unreadable annotations, CMYK, 16-bit or "
        "EXIF-rotated counting images) and list them in the summary, instead of stopping at the first one")

_SUB = {
    "shanghaitech": ("ShanghaiTech Part A or B (crowd counting)", """\
Raw layout: ROOT/part_A/train_data/images/IMG_1.jpg + ROOT/part_A/train_data/ground-truth/GT_IMG_1.mat
(image_info[0,0][0,0][0] = (x, y) head points), same for test_data. Splits: test = test_data;
validation = 20 % (A) / 10 % (B) of train_data, numpy seed 42. Images are stored unchanged.

example:
  promptmix real shanghaitech --root data/ShanghaiTech --part A --out data/shta
"""),
    "ucf-qnrf": ("UCF-QNRF (crowd counting)", """\
Raw layout: ROOT/Train/img_0001.jpg + ROOT/Train/img_0001_ann.mat (annPoints), ROOT/Test/...
Images are resized to fit 1920x1920 keeping the aspect ratio (points scaled, JPEG tables kept).
Splits: test = Test; validation = 10 % of Train, numpy seed 42.

example:
  promptmix real ucf-qnrf --root data/UCF-QNRF_ECCV18 --out data/ucf-qnrf
"""),
    "nyu-depth-v2": ("NYU Depth V2, labeled subset (depth)", """\
Input: nyu_depth_v2_labeled.mat (MATLAB v7.3 / HDF5) with images (N,3,W,H) uint8, depths (N,W,H) float32
metres and scenes. Images are stored as PNG. Splits: 70 % / 10 % / 20 % of a numpy seed-42 permutation.

example:
  promptmix real nyu-depth-v2 --mat data/nyu_depth_v2_labeled.mat --out data/nyu
"""),
    "imagefolder": ("an image folder: ROOT/<class>/<image>, optionally under train/ and test/ (classification)", """\
Splits (numpy seed 42, stratified by class): test = ROOT/test, else 20 % of the train images (all images
without a split level); validation = ROOT/validation (or val), else 10 % of the train images left;
--reduced N then keeps N training images.
EXIF-rotated images are stored upright.

examples:
  promptmix real imagefolder --root data/caltech101/101_ObjectCategories --out data/caltech101
  promptmix real imagefolder --root data/toy --reduced 8 --out data/toy-real
"""),
    "hub": ("any `datasets` source with an image and a label column (classification)", """\
DATASET is a Hub id (needs the network, or a filled cache) or a local dataset folder. Its train,
validation (valid/val) and test splits are used when present; missing ones are made as for imagefolder.

examples:
  promptmix real hub --dataset uoft-cs/cifar10 --image-column img --out data/cifar10
  promptmix real hub --dataset uoft-cs/cifar100 --image-column img --label-column fine_label --reduced 4000 \\
      --out data/cifar100-reduced
"""),
}

JPEG_EPILOG = """\
The quality is read from the quantization tables (no pixels decoded) by inverting libjpeg's scaling of
the standard tables: exact for files saved by libjpeg/Pillow at any quality. For other encoders' tables
the closest IJG quality is printed; --fit adds the fit score (1 = exact) and whether the tables are standard.
Files that are not JPEGs print "-".

examples:
  promptmix jpeg-quality data/ShanghaiTech/part_B/train_data/images/IMG_1.jpg
  promptmix jpeg-quality --fit photos/*.jpg
"""


def add_parsers(subparsers) -> None:
    """Register ``real`` (with one subcommand per builder) and ``jpeg-quality``."""
    real = subparsers.add_parser(
        "real", help="build a real dataset (Hub layout) from a raw download, an image folder or a Hub dataset",
        description="Build a real dataset folder with splits train/validation/test from its raw download.",
        epilog=REAL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = real.add_subparsers(dest="builder", metavar="BUILDER")
    real.set_defaults(func=lambda args: _no_builder(real))

    parsers = {}
    for name, (help_text, epilog) in _SUB.items():
        p = sub.add_parser(name, help=help_text, description=f"Build {help_text}.", epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        parsers[name] = p
    for name in ("shanghaitech", "ucf-qnrf", "imagefolder"):
        parsers[name].add_argument("--root", type=Path, required=True, help="the raw dataset's root folder")
    parsers["shanghaitech"].add_argument("--part", required=True, type=str.upper, choices=("A", "B"),
                                         help="part A (web images) or B (street images)")
    parsers["nyu-depth-v2"].add_argument("--mat", type=Path, required=True, help="nyu_depth_v2_labeled.mat")
    hub = parsers["hub"]
    hub.add_argument("--dataset", required=True, metavar="ID", help="Hub dataset id or local dataset folder")
    hub.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    hub.add_argument("--image-column", default="image", help="the image column (default: image; CIFAR: img)")
    hub.add_argument("--label-column", default="label", help="the label column (default: label; CIFAR-100: "
                                                             "fine_label)")
    for name in ("imagefolder", "hub"):
        parsers[name].add_argument("--reduced", type=int, default=None, metavar="N",
                                   help="keep N training images, stratified by class (numpy seed 42)")
    for p in parsers.values():
        p.add_argument("--out", type=Path, required=True, help="output folder (replaced if it is a dataset folder)")
        p.add_argument(_BAD[0], action="store_true", help=_BAD[1])
        p.set_defaults(func=_build)

    jq = subparsers.add_parser(
        "jpeg-quality", help="print the JPEG quality factor of image files (from their quantization tables)",
        description="Estimate the JPEG quality factor of each FILE and print PATH<TAB>QUALITY.",
        epilog=JPEG_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    jq.add_argument("files", nargs="+", type=Path, metavar="FILE", help="image files")
    jq.add_argument("--fit", action="store_true", help="also print the fit score and standard/non-standard")
    jq.set_defaults(func=_jpeg_quality)


def _no_builder(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _build(args) -> int:
    from . import build_from_hub, build_imagefolder, build_nyu_depth_v2, build_shanghaitech, build_ucf_qnrf

    skip = args.skip_bad
    if args.builder == "shanghaitech":
        report = build_shanghaitech(args.root, args.part, args.out, skip_bad=skip)
    elif args.builder == "ucf-qnrf":
        report = build_ucf_qnrf(args.root, args.out, skip_bad=skip)
    elif args.builder == "nyu-depth-v2":
        report = build_nyu_depth_v2(args.mat, args.out, skip_bad=skip)
    elif args.builder == "imagefolder":
        report = build_imagefolder(args.root, args.out, reduced=args.reduced, skip_bad=skip)
    else:
        report = build_from_hub(args.dataset, args.out, image_column=args.image_column,
                                label_column=args.label_column, reduced=args.reduced, revision=args.revision,
                                skip_bad=skip)
    print(report.summary())
    return 0


def _jpeg_quality(args) -> int:
    from ..errors import InputError
    from ..jpeg import estimate_jpeg_quality, jpeg_quality

    status = 0
    for path in args.files:
        try:
            q = jpeg_quality(path)
            if q is None:
                print(f"{path}\t-")
            elif args.fit:
                est = estimate_jpeg_quality(path)
                print(f"{path}\t{est.quality}\t{est.fit:.4f}\t{'standard' if est.standard else 'non-standard'}")
            else:
                print(f"{path}\t{q}")
        except InputError as exc:
            print(f"promptmix jpeg-quality: error: {exc}", file=sys.stderr)
            status = 1
    return status
