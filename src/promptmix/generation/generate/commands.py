"""``promptmix reproduce RUN --row N``: regenerate one generated row and check it matches."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...cli import Command


class ReproduceCommand(Command):
    summary = "regenerate one generated row and check it matches"
    description = "Regenerate one row of RUN/images from its record and compare it with the stored image."
    examples = """\
Regenerates one stored row alone from its record (prompt, seed, size, quality, conditioning image,
MVC mixing record) with the run's model and settings, and compares decoded pixels with the stored
image: exit status 0 when they match (PSNR at or above --min-psnr, or identical bytes), 1 otherwise.

examples:
  promptmix reproduce run --row 0
  promptmix reproduce run --row-id 51e4674156077982-00003 --min-psnr 40
"""

    def build_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("run", type=Path, help="run folder (with images/)")
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--row", type=int, help="row number in the plan (0-based; the order of the chunk files)")
        which.add_argument("--row-id", help="row id, e.g. 51e4674156077982-00003")
        parser.add_argument("--min-psnr", type=float, default=30.0, help="PSNR (dB) needed for a match (default: 30)")
        parser.add_argument("--device", help="device to regenerate on (default: the run's)")
        parser.add_argument("--dtype", help="dtype to regenerate with (default: the run's)")

    def __call__(self, args: argparse.Namespace) -> int:
        from .reproduce import reproduce_row

        result = reproduce_row(args.run, args.row, row_id=args.row_id, min_psnr=args.min_psnr, device=args.device,
                               dtype=args.dtype)
        print("\n".join(result.summary_lines()))
        return 0 if result.match else 1
