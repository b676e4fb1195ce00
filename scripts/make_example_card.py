"""Regenerate the example dataset card in ``dataset_cards/example/`` (README.md and its PNG figures).

    python scripts/make_example_card.py                 # re-render from the committed run snapshot
    python scripts/make_example_card.py --refresh-run   # first rerun the tiny pipeline, then re-render
    python scripts/make_example_card.py --out DIR       # write the card somewhere else

The example is what ``promptmix publish --dry-run`` writes for a real run of the pipeline made with
promptmix's tiny random models (``promptmix.testing.save_tiny_models``): ``caption``, ``prompts``,
``generate``, ``annotate`` (two counting networks) and ``filter`` on a 4-image procedural stand-in for
ShanghaiTech. What the card is made from (manifest, captions info, prompt bag, fake dataset, the real
train split) is kept in ``dataset_cards/example_run/`` so the card re-renders deterministically without
running any model; ``tests/test_card.py::test_example_card_is_current`` does exactly that and compares.
``--refresh-run`` reruns the pipeline (about a minute on a CPU) and replaces that snapshot.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DIR = ROOT / "dataset_cards" / "example"
SNAPSHOT_DIR = ROOT / "dataset_cards" / "example_run"  # run/ and the real dataset shtb/
REPO_ID = "promptmix/shanghaitech-fake-tiny-example"
NOTICE = ("This is an example card: `promptmix publish --dry-run` of a run made with promptmix's tiny random test "
          "models, so the images are noise and the captions word salad by design, and the \"ShanghaiTech\" source is "
          "a 4-image procedural stand-in. Regenerate it with `python scripts/make_example_card.py`.")
RELEASES = (("0.1.0", 1, "Preview for the maintainers."),  # (version, days after the run, notes)
            ("1.0.0", 3, "First public release."))
# The files of a run the card is made from (relative to the run folder).
RUN_FILES = ("manifest.json", "captions/info.json", "prompts/prompts.parquet", "fake")


@contextlib.contextmanager
def _cwd(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def refresh_snapshot(snapshot: Path = SNAPSHOT_DIR) -> Path:
    """Run the pipeline with the tiny models in a temporary folder and keep what the card needs in ``snapshot``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from promptmix.cli import main
    from promptmix.testing import save_tiny_models
    from promptmix.testing.run_factory import write_real_dataset
    from promptmix.utils.io import atomic_path

    with tempfile.TemporaryDirectory(prefix="promptmix-example-run-") as tmp, _cwd(Path(tmp)):
        save_tiny_models("models", keys=("sd", "captioner", "counter_a", "counter_b"))
        write_real_dataset("shtb", "counting", n_real=4)
        steps = [
            ["caption", "--real", "shtb", "--model", "models/captioner", "--out", "run"],
            ["prompts", "--run", "run", "--prefix", "large crowd", "--suffix", "grayscale",
             "--manual", "a crowded train station platform"],
            ["generate", "--prompts", "run/prompts", "--model", "models/sd", "--out", "run", "-k", "3", "--steps", "2"],
            ["annotate", "run", "--annotator", "models/counter_a", "--annotator", "models/counter_b"],
            ["filter", "run", "--keep", "60"],
        ]
        for argv in steps:
            if main(argv) != 0:
                raise SystemExit(f"`promptmix {' '.join(argv)}` failed")
        with atomic_path(snapshot) as out:
            shutil.copytree("shtb", out / "shtb")
            for rel in RUN_FILES:
                src, dst = Path("run") / rel, out / "run" / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)
    return snapshot


def build_example(dest: str | Path, snapshot: Path = SNAPSHOT_DIR) -> Path:
    """Publish the snapshot's run with ``--dry-run`` (twice, to show the version history) and keep the card."""
    from promptmix.publishing import publish_run
    from promptmix.utils.io import atomic_path

    from promptmix.utils.manifest import read_manifest

    dest = Path(dest)
    finished = read_manifest(snapshot / "run")["stages"]["filter"]["finished_at"]
    run_day = datetime.date.fromisoformat(finished[:10])
    with tempfile.TemporaryDirectory(prefix="promptmix-example-") as tmp:
        repo = Path(tmp) / "repo"
        for version, days, notes in RELEASES:
            date = (run_day + datetime.timedelta(days=days)).isoformat()
            publish_run(snapshot / "run", repo_id=REPO_ID, version=version, local_dir=repo, dry_run=True, date=date,
                        notes=notes, notice=NOTICE)
        with atomic_path(dest) as out:
            (out / "assets").mkdir(parents=True)
            shutil.copy2(repo / "README.md", out / "README.md")
            for png in sorted((repo / "assets").glob("*.png")):
                shutil.copy2(png, out / "assets" / png.name)
    return dest


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refresh-run", action="store_true", help="rerun the tiny pipeline and replace the snapshot")
    parser.add_argument("--out", type=Path, default=EXAMPLE_DIR, help=f"where the card goes (default: {EXAMPLE_DIR})")
    args = parser.parse_args()
    if args.refresh_run:
        print(f"refreshed {refresh_snapshot()}")
    print(f"wrote {build_example(args.out)}")
