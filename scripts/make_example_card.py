"""Regenerate the example dataset card in ``dataset_cards/example/`` (README.md and its PNG figures).

    python scripts/make_example_card.py                 # re-render from the committed run snapshot
    python scripts/make_example_card.py --refresh-run   # first rerun the tiny pipeline, then re-render
    python scripts/make_example_card.py --out DIR       # write the card somewhere else

The example is what ``promptmix publish --dry-run`` writes for a genuine run of the whole pipeline, made
through the public CLI with promptmix's tiny random models (``promptmix.testing.save_tiny_models``), from
a raw download: a small ShanghaiTech part B in its original layout (``part_B/{train,test}_data/images/IMG_n.jpg``
+ ``ground-truth/GT_IMG_n.mat``; people drawn procedurally by ``promptmix.testing.raw_datasets``, JPEG
quality 75, some grayscale) is built with ``promptmix real shanghaitech``, then ``caption``, ``prompts``,
``generate``, ``annotate`` (two counting networks), ``filter`` and ``publish --dry-run --local-dir`` run on it.

What the card is made from (manifest, captions info, prompt bag, fake dataset, the built real dataset)
is kept in ``dataset_cards/example_run/`` so the card re-renders deterministically without running any
model; ``tests/test_card.py::test_example_card_is_current`` does exactly that and compares.
``--refresh-run`` reruns the pipeline (under a minute on a CPU), checks that the card the CLI's
``publish`` wrote is the one re-rendered from the snapshot, and replaces the snapshot.
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
SNAPSHOT_DIR = ROOT / "dataset_cards" / "example_run"  # run/ and the built real dataset shtb/
REPO_ID = "promptmix/shanghaitech-fake-tiny-example"
# The raw "download" (promptmix.testing.raw_datasets.write_shanghaitech_raw): train_data images 5 and 10 are
# grayscale JPEGs (as some ShanghaiTech part A images are), to exercise the grayscale prompt suffix.
RAW = {"part": "B", "n_train": 10, "n_test": 4, "size": (128, 96), "seed": 0, "quality": 75, "grayscale_every": 5}
NOTICE = ("This is an example card, not a real dataset: `promptmix publish --dry-run` of a run of the whole pipeline "
          "made with promptmix's tiny random test models, so the fake images are noise, the captions word salad and "
          "the fake images' counts meaningless, by design. The \"ShanghaiTech Part B\" source is a stand-in: a raw "
          "download in ShanghaiTech's layout (`part_B/{train,test}_data/images/IMG_n.jpg` with "
          "`ground-truth/GT_IMG_n.mat`) holding 10 training and 4 test images of procedurally drawn people at 128x96, "
          "JPEG quality 75, two of them grayscale, built with `promptmix real shanghaitech --part B` (which moves one "
          "training image into the validation split). Everything else (tables, figures, provenance) is what a real "
          "run produces. Regenerate it with `python scripts/make_example_card.py --refresh-run`.")
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


@contextlib.contextmanager
def _env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cli(argv: list[str]) -> None:
    from promptmix.cli import main

    if main(argv) != 0:
        raise SystemExit(f"`promptmix {' '.join(argv)}` failed")


def _release_date(run_dir: Path, days: int) -> str:
    """The ISO date ``days`` after the day the run's filter stage finished (keeps the card independent of today)."""
    from promptmix.run_folder import RunFolder

    finished = RunFolder(run_dir).read_manifest()["stages"]["filter"]["finished_at"]
    return (datetime.date.fromisoformat(finished[:10]) + datetime.timedelta(days=days)).isoformat()


def _publish(run_dir: Path, repo: Path, version: str, days: int, notes: str, notice: str | None) -> None:
    from promptmix.publishing import publish_run

    publish_run(run_dir, repo_id=REPO_ID, version=version, local_dir=repo, dry_run=True,
                date=_release_date(run_dir, days), notes=notes, notice=notice)


def refresh_snapshot(snapshot: Path = SNAPSHOT_DIR) -> Path:
    """Run the pipeline through the CLI in a temporary folder and keep what the card needs in ``snapshot``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from promptmix.testing import save_tiny_models
    from promptmix.testing.raw_datasets import write_shanghaitech_raw
    from promptmix.utils.io import atomic_path

    with tempfile.TemporaryDirectory(prefix="promptmix-example-run-") as tmp, _cwd(Path(tmp)):
        save_tiny_models("models", keys=("sd", "captioner", "counter_a", "counter_b"))
        write_shanghaitech_raw("ShanghaiTech", **RAW)
        for argv in (
            ["real", "shanghaitech", "--root", "ShanghaiTech", "--part", "B", "--out", "shtb"],
            ["caption", "--real", "shtb", "--model", "models/captioner", "--out", "run"],
            ["prompts", "--run", "run", "--prefix", "large crowd", "--suffix", "grayscale"],
            ["generate", "--prompts", "run/prompts", "--model", "models/sd", "--out", "run", "-k", "3", "--steps", "2"],
            ["annotate", "run", "--annotator", "models/counter_a", "--annotator", "models/counter_b"],
            ["filter", "run", "--keep", "60"],
        ):
            _cli(argv)
        version, days, notes = RELEASES[0]
        day = datetime.datetime.fromisoformat(_release_date(Path("run"), days)).replace(tzinfo=datetime.timezone.utc)
        with _env(SOURCE_DATE_EPOCH=str(int(day.timestamp()))):
            _cli(["publish", "run", "--repo-id", REPO_ID, "--version", version, "--notes", notes,
                  "--dry-run", "--local-dir", "published"])
        with atomic_path(snapshot) as out:
            shutil.copytree("shtb", out / "shtb")
            for rel in RUN_FILES:
                src, dst = Path("run") / rel, out / "run" / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)
            # The snapshot must render the card the CLI wrote (before the notice is added), or it is not that run.
            _publish(out / "run", Path("from-snapshot"), version, days, notes, notice=None)
            for rel in ["README.md", *sorted(str(p.relative_to("published")) for p in Path("published/assets").glob("*"))]:
                if (Path("published") / rel).read_bytes() != (Path("from-snapshot") / rel).read_bytes():
                    raise SystemExit(f"{rel} rendered from the snapshot differs from what `promptmix publish` wrote")
    return snapshot


def build_example(dest: str | Path, snapshot: Path = SNAPSHOT_DIR) -> Path:
    """Publish the snapshot's run with ``--dry-run`` (twice, to show the version history) and keep the card."""
    from promptmix.utils.io import atomic_path

    dest = Path(dest)
    with tempfile.TemporaryDirectory(prefix="promptmix-example-") as tmp:
        repo = Path(tmp) / "repo"
        for version, days, notes in RELEASES:
            _publish(snapshot / "run", repo, version, days, notes, notice=NOTICE)
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
