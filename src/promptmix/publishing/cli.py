"""``promptmix publish``: the fake dataset of a run as a versioned Hugging Face Hub dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
examples:
  # look at the repo first: card, figures, Parquet shards and provenance.json, nothing pushed
  promptmix publish run --repo-id me/promptmix-shtb --version 1.0.0 --local-dir out/shtb-1.0.0 --dry-run
  # push it: one commit with every file, then the tag v1.0.0 on that commit
  promptmix publish run --repo-id me/promptmix-shtb --version 1.0.0
  # a new version on a branch, with release notes for the card's version history
  promptmix publish run --repo-id me/promptmix-shtb --version 1.1.0 --branch dev --notes "k=10 instead of 5"

Readers then load exactly this version with:
  load_dataset("me/promptmix-shtb", revision="v1.0.0")               # config "kept" (default)
  load_dataset("me/promptmix-shtb", "all", revision="v1.0.0")        # every row with its scores

The token comes from where huggingface_hub looks (HF_TOKEN, or `hf auth login`); it is never
taken on the command line and never written to a card, a log or an error. Publishing a version that
already exists (tag vX.Y.Z) is refused unless --force. A failed commit changes nothing and creates no
tag: rerun the same command.
"""


def add_parsers(subparsers) -> None:
    """Register ``publish`` on the top-level ``promptmix`` parser."""
    p = subparsers.add_parser(
        "publish", help="publish a run's fake dataset on the Hub (one commit + tag vX.Y.Z)",
        description="Lay RUN/fake out as a Hub dataset repo (Parquet shards under data/, README.md card with "
                    "figures under assets/, provenance.json with every stage's config), write it to --local-dir "
                    "when given, and push it to the Hub as one commit tagged vX.Y.Z unless --dry-run.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, metavar="RUN", help="run folder with fake/ (written by `promptmix filter`)")
    p.add_argument("--repo-id", required=True, metavar="ORG/NAME", help="Hub dataset repo, e.g. me/promptmix-shtb")
    p.add_argument("--version", required=True, metavar="X.Y.Z", help="semantic version; the tag is vX.Y.Z")
    p.add_argument("--local-dir", type=Path, metavar="DIR",
                   help="also write the repo to this folder (atomically; an earlier `promptmix publish` folder "
                        "is replaced, any other non-empty folder refused)")
    p.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its visibility)")
    p.add_argument("--branch", metavar="B", help="branch to commit to (default: main); created when missing")
    p.add_argument("--dry-run", action="store_true", help="build everything but contact the Hub not at all")
    p.add_argument("--force", action="store_true",
                   help="publish even if version X.Y.Z exists (moves its tag) or --local-dir holds other files")
    p.add_argument("--notes", metavar="TEXT", help="release notes: the card's version history and the commit description")
    p.add_argument("--license", metavar="ID", help="license id for the card instead of the derived one "
                                                   "(both source licenses are still stated in the card)")
    p.add_argument("--pretty-name", metavar="NAME", help="the dataset's title (default: derived from the source dataset)")
    p.add_argument("--real", metavar="DIR_OR_ID", help="real dataset (folder or Hub id) if it moved since the run "
                                                       "(default: the one recorded in RUN/captions/info.json)")
    p.set_defaults(func=run_publish)


def run_publish(args) -> int:
    from .publish import publish_run

    result = publish_run(args.run, repo_id=args.repo_id, version=args.version, local_dir=args.local_dir,
                         private=args.private, branch=args.branch, dry_run=args.dry_run, force=args.force,
                         notes=args.notes, license=args.license, pretty_name=args.pretty_name, real=args.real)
    rows = ", ".join(f"{c}: {n} rows" for c, n in result.rows.items())
    print(f"{result.repo_id} {result.tag}: {len(result.files)} files ({rows}); license {result.license['license']}")
    if result.local_dir is not None:
        print(f"local folder: {result.local_dir}")
    if result.dry_run:
        print("dry run: nothing was sent to the Hub. Files of the commit:")
        for rel in result.files:
            print(f"  {rel}")
        if result.local_dir is None:
            print("(add --local-dir DIR to keep the folder)")
        print(f"once pushed, load it with:  from datasets import load_dataset; {result.load_snippet}")
    else:
        print(f"pushed commit {result.commit_oid} to {result.url} (branch {result.branch}), tagged {result.tag}")
        if result.deleted:
            print(f"removed {len(result.deleted)} files of the previous version: {', '.join(result.deleted)}")
        print(f"load it with:  from datasets import load_dataset; {result.load_snippet}")
    return 0
