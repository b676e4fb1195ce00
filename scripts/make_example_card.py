"""Regenerate the example dataset card in ``dataset_cards/example/`` (README.md and its PNG figures).

    python scripts/make_example_card.py            # rewrite dataset_cards/example/
    python scripts/make_example_card.py OUT_DIR    # write somewhere else

The card is what ``promptmix publish`` writes for a deterministic counting run built by
``promptmix.testing.run_factory.make_run`` (procedural images, placeholder commit hashes), published
twice with ``--dry-run --local-dir`` so the version history shows how versions accumulate.
``tests/test_card.py::test_example_card_is_current`` re-renders it and compares.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "dataset_cards" / "example"
REPO_ID = "promptmix/shanghaitech-fake-example"
NOTICE = ("This is an example card, rendered by `python scripts/make_example_card.py` from a synthetic test run "
          "(procedural drawings instead of diffusion images; model ids are real but their commit hashes are "
          "placeholders). It shows what `promptmix publish` writes for a crowd-counting run.")
RELEASES = (("0.1.0", "2025-01-16", "Preview for the maintainers."),
            ("1.0.0", "2025-01-20", "First public release."))


def build_example(dest: str | Path) -> Path:
    """Write the example card (README.md + assets/*.png) into ``dest`` and return it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from promptmix.publishing import publish_run
    from promptmix.testing.run_factory import make_run
    from promptmix.utils.io import atomic_path

    dest = Path(dest)
    with tempfile.TemporaryDirectory(prefix="promptmix-example-") as tmp:
        run = make_run(Path(tmp), task="counting", n_real=4, k=3, keep_percent=60.0)
        repo = Path(tmp) / "repo"
        for version, date, notes in RELEASES:
            publish_run(run.run_dir, repo_id=REPO_ID, version=version, local_dir=repo, dry_run=True, date=date,
                        notes=notes, notice=NOTICE)
        with atomic_path(dest) as out:
            (out / "assets").mkdir(parents=True)
            shutil.copy2(repo / "README.md", out / "README.md")
            for png in sorted((repo / "assets").glob("*.png")):
                shutil.copy2(png, out / "assets" / png.name)
    return dest


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else EXAMPLE_DIR
    print(f"wrote {build_example(target)}")
