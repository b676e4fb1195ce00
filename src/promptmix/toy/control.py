"""The toy world's control for the generator: PromptMix with ideal "generated" images.

PromptMix's gain rests on two things: images like the real ones, and annotators that label them well. The toy
world can hold the first fixed: :func:`labelled_toy_fakes` takes fresh toy scenes (drawn with a seed no model
was trained on) as if a perfect generator had made them, labels them with the run's annotators (never their
ground truth) through the real ``annotate`` and ``filter`` code, and writes a fake dataset a ``train`` run can
mix in. A student that gains with these but not with the toy generator's images says the annotate, filter,
mixing and training path works and the toy generator is what limits the effect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .world import WorldSettings, scenes

#: scene seed of the control images (no toy model was trained on it; the demo's real data use seeds < 1000)
CONTROL_SEED = 5000


def labelled_toy_fakes(run_dir: str | Path, annotators: Sequence[str], *, n: int = 96, seed: int = CONTROL_SEED,
                       keep_percent: float = 75.0, target: str = "mean",
                       world: WorldSettings = WorldSettings()) -> Path:
    """Write ``run_dir`` (a run folder: images/, annotations/, fake/) and return its fake dataset folder."""
    from ..annotation.annotate.runner import annotate_run
    from ..annotation.filter.config import FilterConfig
    from ..annotation.filter.filtering import filter_run
    from ..run_folder import RunFolder
    from ..testing._annotators import write_generated_run

    run = RunFolder(run_dir)
    if not (run.images / "plan.json").is_file():
        write_generated_run(run.root, [s.image.convert("RGB") for s in scenes(seed, n, world)], chunk_size=16)
    annotate_run(run, list(annotators), device="cpu")
    report = filter_run(run, FilterConfig(keep_percent=keep_percent, target=target))
    return Path(report.out)
