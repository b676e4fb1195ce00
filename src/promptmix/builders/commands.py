"""``promptmix jpeg-quality FILE...``: the JPEG quality factor of image files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import Command


class JpegQualityCommand(Command):
    summary = "print the JPEG quality factor of image files (from their quantization tables)"
    description = "Estimate the JPEG quality factor of each FILE and print PATH<TAB>QUALITY."
    examples = """\
The quality is read from the quantization tables (no pixels decoded) by inverting libjpeg's scaling of
the standard tables: exact for files saved by libjpeg/Pillow at any quality. For other encoders' tables
the closest IJG quality is printed; --fit adds the fit score (1 = exact) and whether the tables are standard.
Files that are not JPEGs print "-".

examples:
  promptmix jpeg-quality data/ShanghaiTech/part_B/train_data/images/IMG_1.jpg
  promptmix jpeg-quality --fit photos/*.jpg
"""

    def build_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="image files")
        parser.add_argument("--fit", action="store_true", help="also print the fit score and standard/non-standard")

    def __call__(self, args: argparse.Namespace) -> int:
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
