"""The dataset card: its YAML, its sections, the license rule, the figures of every task, the example card."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard
from PIL import Image

from promptmix import schema as S
from promptmix.dataset_cards import card as C
from promptmix.errors import InputError
from promptmix.testing.hub import fake_commit as placeholder_hash
from promptmix.testing.runs import make_run

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_models):
    """One finished run per task (built once for this module)."""
    base = tmp_path_factory.mktemp("card-runs")
    return {task: make_run(base / task, task=task, models=tiny_models) for task in S.TASKS}


def _render(run, tmp_path, **kwargs):
    inputs = C.load_card_inputs(run.run_dir)
    figures = C.make_card_figures(inputs, tmp_path)
    card = C.render_card(inputs, repo_id="me/fake-set", version="1.2.0", figures=figures, date="2025-02-01", **kwargs)
    return inputs, figures, card


def test_card_yaml_parses_and_body_has_every_section(runs, tmp_path):
    run = runs["counting"]
    inputs, figures, card = _render(run, tmp_path)
    parsed = DatasetCard(card.content)  # what the Hub and `load_dataset` read
    data = parsed.data.to_dict()
    assert data["license"] == "unknown"  # SD 2.x (openrail++) + ShanghaiTech (no license) -> unknown
    assert data["task_categories"] == ["other"]
    assert "synthetic" in data["tags"] and "crowd-counting" in data["tags"]
    assert data["size_categories"] == ["n<1K"]
    assert data["source_datasets"] == ["extended"]
    assert data["pretty_name"] == "PromptMix synthetic ShanghaiTech"
    assert [c["config_name"] for c in data["configs"]] == ["kept", "all"]
    assert data["configs"][0]["default"] is True
    infos = {i["config_name"]: i for i in data["dataset_info"]}
    assert infos["kept"]["splits"][0]["num_examples"] == run.kept
    assert infos["all"]["splits"][0]["num_examples"] == run.rows

    text = parsed.text
    for heading in ("## Summary", "## Load it", "## Train with it", "## Sample images", "## Dataset structure",
                    "## How it was made", "### Key settings", "### Library versions", "## Quality scores",
                    "## Real vs fake", "## Prompt statistics", "## Reproduce any row", "## License",
                    "## Limitations and biases", "## Version history", "## Citation"):
        assert heading in text, heading
    assert 'load_dataset("me/fake-set", revision="v1.2.0", split="train")' in text
    assert 'load_dataset("me/fake-set", "all", revision="v1.2.0", split="train")' in text
    # models with their commit hashes, seeds, k, r_img, threshold, JPEG policy, library versions
    assert placeholder_hash("stabilityai/stable-diffusion-2-1-base") in text
    assert placeholder_hash("Salesforce/blip-image-captioning-base") in text
    assert "| seed (`generate.seed`) | 1234 |" in text
    assert "| images per prompt (k) | 3 |" in text
    assert "| kept (r_img) | 60 % of the scored images |" in text
    threshold = inputs.manifest["stages"]["filter"]["threshold"]
    assert f"| quality threshold (q) | {threshold:.4g} (largest score kept) |" in text
    assert "quality of its source image" in text and "75: 15" in text
    assert f"| diffusers | {importlib.metadata.version('diffusers')} |" in text
    # figures linked by relative path, each file present
    for rel in figures.values():
        assert f"]({rel})" in text and (tmp_path / rel).is_file()
    # the exact command to regenerate a row that exists
    row_id = min(inputs.rows("all")[S.ROW_ID])
    assert f"promptmix reproduce RUN --row-id {row_id}" in text
    # BibTeX of the papers and of the source dataset; local paths never shown in full
    assert "@misc{bakhtiarnia_promptmix" in text and "@inproceedings{zhang2016mcnn" in text
    assert "rahat_mvc" not in text and "paulsen_diffaug" not in text  # neither MVC nor class-name prompts here
    assert str(run.real_dir) not in text and str(run.run_dir) not in text
    assert "| `real` | `.../shanghaitech-part-b` |" in text
    # version history holds this version
    assert "| `1.2.0` | 2025-02-01 | 9 | 15 |" in text


def test_license_rule():
    sd15 = C.generator_license("stable-diffusion-v1-5/stable-diffusion-v1-5")
    sd2 = C.generator_license("stabilityai/stable-diffusion-2-1-base")
    sdxl = C.generator_license("stabilityai/stable-diffusion-xl-base-1.0")
    assert (sd15.id, sd2.id, sdxl.id) == ("creativeml-openrail-m", "openrail++", "openrail++")
    assert C.generator_license("/home/me/tiny-models/sd").id == "unknown"
    assert C.source_dataset("shanghaitech-part-b").key == "shanghaitech"
    assert C.source_dataset("uoft-cs/cifar100").key == "cifar100"  # not mistaken for CIFAR-10
    assert C.source_dataset("nyu-depth-v2").key == "nyu-depth-v2"
    assert C.source_dataset("my-own-photos") is None
    caltech = C.source_dataset("caltech101").license
    assert C.combine_licenses(sd2, caltech) == {"license": "other", "license_name": "openrail-plus-plus-and-cc-by-4.0",
                                                "license_link": "LICENSE.md"}
    assert C.combine_licenses(sd2, C.source_dataset("shanghaitech").license) == {"license": "unknown"}
    assert C.combine_licenses(caltech, caltech) == {"license": "cc-by-4.0"}
    assert C.combine_licenses(C.UNKNOWN_LICENSE, C.UNKNOWN_LICENSE) == {"license": "unknown"}


def test_license_other_links_license_file_and_states_both(runs, tmp_path):
    """A real dataset whose card declares a license: combined with the generator's into 'other'."""
    run = runs["classification"]
    readme = run.real_dir / "README.md"
    text = readme.read_text()
    readme.write_text(text.replace("---\n", "---\nlicense: cc-by-4.0\n", 1))
    try:
        inputs, _, card = _render(run, tmp_path)
    finally:
        readme.write_text(text)
    data = DatasetCard(card.content).data.to_dict()
    assert data["license"] == "other"
    assert data["license_name"] == "openrail-plus-plus-and-cc-by-4.0" and data["license_link"] == "LICENSE.md"
    assert data["task_categories"] == ["image-classification"]
    assert "CreativeML Open RAIL++-M" in card.text and "cc-by-4.0" in card.text
    ctx, _ = C.card_context(inputs, repo_id="me/fake-set", version="1.2.0")
    license_md = C.license_file_text(ctx)
    assert "CreativeML Open RAIL++-M" in license_md and "cc-by-4.0" in license_md
    # an explicit license wins but both component licenses stay in the text
    _, _, card = _render(run, tmp_path, license="cc-by-nc-4.0")
    assert DatasetCard(card.content).data.license == "cc-by-nc-4.0"
    assert "The publisher set this dataset's license" in card.text and "Open RAIL++-M" in card.text


@pytest.mark.parametrize("task", S.TASKS)
def test_figures_for_every_task(runs, tmp_path, task):
    inputs = C.load_card_inputs(runs[task].run_dir)
    figures = C.make_card_figures(inputs, tmp_path)
    assert set(figures) == {"samples", "quality", "distribution", "prompt_lengths"}
    for rel in figures.values():
        with Image.open(tmp_path / rel) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 150
    # the sample grid pairs each real image with fakes generated from its own prompts
    rows = C.sample_grid_rows(inputs)
    assert rows and all(r.fakes for r in rows)
    real_ids = inputs.real[S.IMAGE_ID]
    all_rows = inputs.rows("all")
    source_of_prompt = dict(zip(all_rows[S.PROMPT], all_rows[S.SOURCE_IMAGE_ID]))
    for row in rows:
        m = re.match(r"real (\S+)", row.real.caption)
        if m is None:
            continue  # manual-prompt row
        assert m.group(1) in real_ids
        for fake in row.fakes:
            prompt = fake.caption.split(": ", 1)[1]
            assert source_of_prompt[prompt] == m.group(1)
            assert fake.caption.startswith(("kept", "dropped"))


def test_figures_are_deterministic(runs, tmp_path):
    inputs = C.load_card_inputs(runs["depth"].run_dir)
    a = C.make_card_figures(inputs, tmp_path / "a")
    b = C.make_card_figures(inputs, tmp_path / "b")
    for name, rel in a.items():
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / b[name]).read_bytes(), name


def test_single_annotator_has_no_quality_section(tmp_path, tiny_models):
    run = make_run(tmp_path / "one", task="counting", annotators=("csrnet",), n_real=2, k=2, models=tiny_models)
    inputs, figures, card = _render(run, tmp_path / "out")
    assert "quality" not in figures
    assert "with a single annotator there is no quality score" in card.text
    assert "| quality threshold (q) | none (single annotator) |" in card.text


def test_card_without_real_dataset_still_renders(runs, tmp_path):
    inputs = C.load_card_inputs(runs["counting"].run_dir, real="someone/not-on-this-machine")
    assert inputs.real is None
    card = C.render_card(inputs, repo_id="me/fake-set", version="1.0.0", date="2025-02-01")
    assert "could not be read when this card was made" in card.text
    assert DatasetCard(card.content).data.source_datasets == ["extended|someone/not-on-this-machine"]


def test_bad_run_folders_raise_clear_errors(tmp_path, runs):
    with pytest.raises(InputError, match="does not exist"):
        C.load_card_inputs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="promptmix filter"):
        C.load_card_inputs(tmp_path / "empty")
    from datasets import Dataset

    from promptmix.utils.io import write_hub_folder

    write_hub_folder(tmp_path / "bad" / "fake", {"kept": {"train": Dataset.from_dict({S.ROW_ID: ["a"]})}})
    with pytest.raises(InputError, match=r"columns \[.*'image'.*\] are missing"):
        C.load_card_inputs(tmp_path / "bad")


def test_example_card_is_current(tmp_path):
    """dataset_cards/example/ must be what the current template renders; regenerate it if this fails."""
    spec = importlib.util.spec_from_file_location("make_example_card", ROOT / "scripts" / "make_example_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fresh = module.build_example(tmp_path / "example")
    committed = ROOT / "dataset_cards" / "example"

    def normalise(text: str) -> str:  # byte counts and shard fingerprints depend on the pyarrow build
        text = re.sub(r"num_bytes: \d+", "num_bytes: N", text)
        return re.sub(r"(data/\w+/\w+)-[0-9a-f]+-\*\.parquet", r"\1-FP-*.parquet", text)

    how = "dataset_cards/example/ is out of date: run `python scripts/make_example_card.py` and commit the result"
    assert (committed / "README.md").is_file(), how
    assert normalise((fresh / "README.md").read_text()) == normalise((committed / "README.md").read_text()), how
    fresh_pngs = sorted(p.name for p in (fresh / "assets").glob("*.png"))
    assert fresh_pngs == sorted(p.name for p in (committed / "assets").glob("*.png")), how
    for name in fresh_pngs:
        with Image.open(fresh / "assets" / name) as a, Image.open(committed / "assets" / name) as b:
            assert a.size == b.size, f"{how} ({name} changed size)"
    # every image the card links is there
    for rel in re.findall(r"\]\((assets/[^)]+\.png)\)", (committed / "README.md").read_text()):
        assert (committed / rel).is_file(), rel
    # the snapshot is a run from a raw ShanghaiTech download built by `promptmix real`, and it stays small
    snapshot = ROOT / "dataset_cards" / "example_run"
    assert "builder: shanghaitech" in (snapshot / "shtb" / "README.md").read_text()
    assert sum(p.stat().st_size for p in snapshot.rglob("*") if p.is_file()) < 1_000_000
