"""Stage ``publish``: the fake dataset as a versioned Hub dataset repo (``promptmix publish``, section ``publish:``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..stage import Stage
from .config import PublishConfig


class PublishStage(Stage):
    name = "publish"
    config_class = PublishConfig
    inputs = ("filter",)
    summary = "publish a run's fake dataset on the Hub (one commit + tag vX.Y.Z)"
    description = ("Lay RUN/fake out as a Hub dataset repo (Parquet shards under data/, README.md card with figures "
                   "under assets/, provenance.json with every stage's config), write it to --local-dir when given, "
                   "and push it to the Hub as one commit tagged vX.Y.Z unless --dry-run.")
    examples = """\
examples:
  promptmix publish run --repo-id me/promptmix-shtb --version 1.0.0 --dry-run --local-dir out/pub
  promptmix publish run --repo-id me/promptmix-shtb --version 1.0.0 --notes "first release"
  promptmix publish run --repo-id me/promptmix-shtb --version 1.1.0 --branch dev --private
then:
  load_dataset("me/promptmix-shtb", revision="v1.0.0")               # the kept rows
  load_dataset("me/promptmix-shtb", "all", revision="v1.0.0")        # every row with its scores

The token comes from where huggingface_hub looks (HF_TOKEN, or `hf auth login`); it is never
taken on the command line and never written to a card, a log or an error. Publishing a version that
already exists (tag vX.Y.Z) is refused unless --force. A failed commit changes nothing and creates no
tag: rerun the same command.
"""
    run_folder_help = "run folder with fake/ (written by `promptmix filter`)"
    marker_files = ("provenance.json",)

    def outputs(self, config: PublishConfig, run):
        return (Path(config.local_dir),) if config.local_dir is not None else ()

    def run(self, config: PublishConfig, run, *, preview: bool = False) -> dict[str, Any]:
        """``preview``: a dry run that shows the Hub repo (``promptmix publish --dry-run``); otherwise a publication
        that is not pushed (``push: false`` in a pipeline) is a local one, whose card loads it by its path."""
        from .publish import publish_run

        with run.lock(self.name):
            result = publish_run(run.root, repo_id=config.repo_id, version=config.version, local_dir=config.local_dir,
                                 private=config.private, branch=config.branch, dry_run=not config.push,
                                 force=config.force, notes=config.notes, license=config.license,
                                 pretty_name=config.pretty_name, notice=config.notice, real=config.real,
                                 local_card=not config.push and not preview)
        return {"repo_id": result.repo_id, "tag": result.tag, "branch": result.branch, "files": list(result.files),
                "rows": dict(result.rows), "license": result.license["license"],
                "local_dir": str(result.local_dir) if result.local_dir else None, "pushed": result.pushed,
                "commit": result.commit_oid, "url": result.url if result.pushed else None,
                "deleted": list(result.deleted), "load_snippet": result.load_snippet, "local_card": result.local_card}

    # -- command line: pushes by default; --dry-run does not -----------------------------------------------
    def cli_defaults(self) -> dict[str, Any]:
        return {"push": True}

    def add_cli_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true",
                            help="build everything but contact the Hub not at all (the same as --no-push)")

    def cli_overrides(self, args) -> dict[str, Any]:
        return {"push": False} if args.dry_run else {}

    def cli(self, config, run, args) -> int:
        record = self.run(config, run, preview=True)  # on the command line a dry run previews the Hub repo
        for line in self.summary_lines(record):
            print(line)
        return 0

    def summary_lines(self, record: Mapping[str, Any]) -> list[str]:
        rows = ", ".join(f"{c}: {n} rows" for c, n in record["rows"].items())
        out = [f"{record['repo_id']} {record['tag']}: {len(record['files'])} files ({rows}); license "
               f"{record['license']}"]
        if record["local_dir"] is not None:
            out.append(f"local folder: {record['local_dir']}")
        if not record["pushed"]:
            out.append("dry run: nothing was sent to the Hub. Files of the commit:")
            out += [f"  {rel}" for rel in record["files"]]
            if record["local_dir"] is None:
                out.append("(add --local-dir DIR to keep the folder)")
            if record.get("local_card"):
                out.append(f"load it with:  from datasets import load_dataset; {record['load_snippet']}")
            else:
                out.append(f"once pushed, load it with:  from datasets import load_dataset; {record['load_snippet']}")
        else:
            out.append(f"pushed commit {record['commit']} to {record['url']} (branch {record['branch']}), tagged "
                       f"{record['tag']}")
            if record["deleted"]:
                out.append(f"removed {len(record['deleted'])} files of the previous version: "
                           f"{', '.join(record['deleted'])}")
            out.append(f"load it with:  from datasets import load_dataset; {record['load_snippet']}")
        return out
