"""A local publication (never pushed) and what any publication carries: its card loads it by path, names no
fake Hub id or tag; published files name local models by name and hash, never by this machine's paths; the
card's DataLoader snippet runs on whole fake rows."""

from __future__ import annotations

import json
import re

import pytest

from promptmix.publishing import publish_run
from promptmix.run_folder import RunFolder
from promptmix.testing.runs import make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_models):
    run = make_run(tmp_path_factory.mktemp("local-pub"), task="counting", n_real=3, k=2, models=tiny_models)
    # a run made with local models, as `promptmix demo` and most real runs are: absolute paths in the manifest
    local_model = run.run_dir.parent / "models" / "counter_a"
    rec = RunFolder(run.run_dir).stage_record("annotate")
    rec["config"] = {**rec.get("config", {}), "annotators": [f"counter-a:{local_model}"]}
    rec["models"] = {"counter-a": {"name": str(local_model), "local": True, "weights_sha256": "ab" * 32}}
    RunFolder(run.run_dir).record_stage("annotate", rec)
    return run


def _code_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def test_a_local_publication_is_loaded_by_its_path_and_names_no_hub_id_or_tag(run, tmp_path):
    out = tmp_path / "publish"
    result = publish_run(run.run_dir, repo_id="local/promptmix-demo", version="0.1.0", local_dir=out, dry_run=True,
                         local_card=True, date="2025-03-01")
    card = (out / "README.md").read_text()
    assert f'load_dataset("{out.resolve().as_posix()}", split="train")' in card
    assert "local/promptmix-demo" not in card.split("## Citation")[0]
    assert "git tag `v0.1.0`" not in card and 'revision="v0.1.0"' not in card.split("## Load it")[1].split("```")[1]
    assert result.load_snippet == f'load_dataset("{out.resolve().as_posix()}")'

    # the same run published as a preview of the Hub repo keeps the Hub card
    preview = tmp_path / "preview"
    publish_run(run.run_dir, repo_id="me/fake", version="1.0.0", local_dir=preview, dry_run=True, date="2025-03-01")
    text = (preview / "README.md").read_text()
    assert 'load_dataset("me/fake", revision="v1.0.0"' in text and "(git tag `v1.0.0`" in text


def test_published_files_name_local_models_without_this_machines_paths(run, tmp_path):
    out = tmp_path / "repo"
    publish_run(run.run_dir, repo_id="me/fake", version="1.0.0", local_dir=out, dry_run=True, date="2025-03-01")
    machine = str(run.run_dir.parent)
    for name in ("README.md", "provenance.json"):
        assert machine not in (out / name).read_text(), name
    provenance = json.loads((out / "provenance.json").read_text())
    annotate = provenance["run"]["manifest"]["stages"]["annotate"]
    assert annotate["config"]["annotators"] == ["counter-a:counter_a"]
    assert annotate["models"]["counter-a"] == {"name": "counter_a", "local": True, "weights_sha256": "ab" * 32}
    assert provenance["run"]["path"] == run.run_dir.name


def test_the_cards_dataloader_snippet_collates_whole_fake_rows(run, tmp_path):
    """The card's code, run as written: the per-epoch draw, then a DataLoader over whole rows (None in
    `mixing` and `conditioning_image_id`, images of different sizes), which the default collate refuses."""
    import torch
    from torch.utils.data import DataLoader, default_collate

    out = tmp_path / "local"
    publish_run(run.run_dir, repo_id="local/x", version="0.1.0", local_dir=out, dry_run=True, local_card=True,
                date="2025-03-01")
    train = (out / "README.md").read_text().split("## Train with it")[1].split("## Sample images")[0]
    mixing, loader_code = _code_blocks(train)
    assert "def collate(rows)" in loader_code
    scope: dict = {"num_epochs": 1}
    exec(mixing, scope)  # noqa: S102 - the card's own snippet
    rows = [scope["draw"].with_format("torch")[i] for i in range(2)]
    with pytest.raises((TypeError, RuntimeError)):
        default_collate(rows)  # why the card needs its own collate
    exec(loader_code, scope)  # noqa: S102
    batch = next(iter(DataLoader(scope["draw"].with_format("torch"), batch_size=len(scope["draw"]),
                                 collate_fn=scope["collate"])))
    n = len(scope["draw"])
    assert batch["mixing"] == [None] * n and batch["conditioning_image_id"] == [None] * n
    assert isinstance(batch["count"], torch.Tensor) and batch["count"].shape == (n,)
    assert torch.allclose(batch["count"], torch.tensor([float(c) for c in scope["draw"]["count"]]))
    assert len(batch["image"]) == n
    assert next(iter(scope["loader"]))["row_id"]  # the card's own loader works too


def test_the_cards_load_and_target_snippets_run_and_read_the_maps(run, tmp_path):
    """The card's "Load it" snippet and its `target_map` (maps stored once, as {shape, data}) run as written: the
    target of each kept row sums to its `count`, and `all` holds the kept rows plus the dropped ones, once each."""
    import numpy as np

    out = tmp_path / "local"
    publish_run(run.run_dir, repo_id="local/x", version="0.1.0", local_dir=out, dry_run=True, local_card=True,
                date="2025-03-01")
    card = (out / "README.md").read_text()
    load_code = _code_blocks(card.split("## Load it")[1].split("## Train with it")[0])[0]
    scope: dict = {}
    exec(load_code, scope)  # noqa: S102 - the card's own snippet
    fake, every = scope["fake"], scope["every"]
    assert len(every) == len(fake) + sum(1 for k in every["kept"] if not k)
    assert sorted(every["row_id"]) == sorted(set(every["row_id"]))
    mixing = _code_blocks(card.split("## Train with it")[1].split("## Sample images")[0])[0]
    scope = {"num_epochs": 1}
    exec(mixing, scope)  # noqa: S102
    for row in scope["fake"]:
        m = scope["target_map"](row)
        assert m.ndim == 2 and m.dtype == np.float32 and float(m.sum()) == pytest.approx(float(row["count"]), rel=1e-3)
    # published as the fake folder's own shards: no second copy of the kept rows
    parts = sorted(p.name for p in (out / "data").iterdir())
    assert parts == ["dropped", "kept"] or parts == ["kept"]
