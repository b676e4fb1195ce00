"""``promptmix generate``: plan, seeds, size and JPEG-quality matching, the run folder, bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from promptmix import schema as S

NAMES = ["cat", "dog"]


# -- shared helpers (imported by the other test_generate_* / test_reproduce files) -----------------------
def write_bag(root: Path, *, with_real: bool = False, second_dog: bool = False) -> Path:
    """A classification prompt bag with sources of different sizes, qualities and colour, under ``root/prompts``.

    Prompts: p0 (source s0: 40x24, q60, colour), p1 (s1: 24x40, q90, grayscale), p2 (two sources s0 and
    s2: 32x32, no JPEG quality), p3 (no source). With ``with_real``, ``root/real`` holds the 3 source
    images as a real dataset (train split) and the bag's info points at it (the folder is named after
    ``root`` because ``datasets.load_dataset`` caches local folders by name). ``second_dog`` adds p4,
    a second caption of class 1 (source s1), as MVC needs two captions per class.
    """
    import datasets

    from promptmix.generation.prompts.bag import prompt_id
    from promptmix.utils.io import write_hub_folder, write_parquet_atomic

    sources = [
        {S.IMAGE_ID: "s0", S.LABEL: 0, S.WIDTH: 40, S.HEIGHT: 24, S.JPEG_QUALITY: 60, S.IS_GRAYSCALE: False},
        {S.IMAGE_ID: "s1", S.LABEL: 1, S.WIDTH: 24, S.HEIGHT: 40, S.JPEG_QUALITY: 90, S.IS_GRAYSCALE: True},
        {S.IMAGE_ID: "s2", S.LABEL: 0, S.WIDTH: 32, S.HEIGHT: 32, S.JPEG_QUALITY: None, S.IS_GRAYSCALE: False},
    ]
    texts = [("a cat on a sofa", 0, ["s0"]), ("a dog in the snow", 1, ["s1"]),
             ("a cat in the sun", 0, ["s0", "s2"]), ("a cat, drawn by hand", 0, [])]
    if second_dog:
        texts.append(("a dog on a beach", 1, ["s1"]))
    prompts = [{S.PROMPT_ID: prompt_id(t, y), S.PROMPT: t, S.BASE_TEXT: t, S.ORIGIN: "caption" if src else "manual",
                S.SOURCE_IMAGE_IDS: src, S.LABEL: y} for t, y, src in texts]
    bag = root / "prompts"
    write_parquet_atomic(datasets.Dataset.from_list(prompts, features=S.PROMPTS), bag / "prompts.parquet")
    write_parquet_atomic(datasets.Dataset.from_list(sources, features=S.SOURCES), bag / "sources.parquet")
    info = {"task": "classification", "class_names": NAMES}
    if with_real:
        rng = np.random.RandomState(0)
        rows = []
        for s in sources:
            buf = io.BytesIO()
            Image.fromarray(rng.randint(0, 255, (s[S.HEIGHT], s[S.WIDTH], 3)).astype("uint8")).save(buf, "JPEG")
            rows.append({**s, S.IMAGE: {"bytes": buf.getvalue(), "path": None}})
        real = root / f"real-{root.name}"
        write_hub_folder(real, {"default": {"train": datasets.Dataset.from_list(
            rows, features=S.classification_real(NAMES))}})
        info["real"] = {"ref": str(real), "revision": None, "split": "train"}
    (bag / "info.json").write_text(json.dumps(info), encoding="utf-8")
    return bag


def tiny_config(prompts, model, **kw):
    from promptmix.generation.generate.config import GenerateConfig

    base = dict(prompts=str(prompts), model=str(model), images_per_prompt=2, steps=2, chunk_size=3, batch_size=2,
                size="32x24", device="cpu")
    base.update(kw)
    return GenerateConfig(**base)


def chunk_bytes(run_dir: Path) -> dict[str, bytes]:
    from promptmix.run_folder import RunFolder

    return {p.name: p.read_bytes() for _, p in RunFolder(run_dir).image_chunks().list()}


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from promptmix.testing._diffusion import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "sd")


@pytest.fixture(scope="module")
def bag_run(tmp_path_factory, tiny_sd):
    """One finished run over the bag of :func:`write_bag` (k=2, chunks of 3 rows, batches of 2)."""
    from promptmix.generation.generate.runner import generate

    root = tmp_path_factory.mktemp("bag-run")
    bag = write_bag(root)
    config = tiny_config(bag, tiny_sd, jpeg_quality="source", default_jpeg_quality=85)
    report = generate(config, root / "run")
    return root / "run", config, report


# -- pure functions ------------------------------------------------------------------------------------
def test_row_seed_is_a_stable_hash():
    import hashlib

    from promptmix.generation.generate.seeds import derived_choice, row_seed

    # a SHA-256 of the text "promptmix-row:0:abc:1": the same on every platform and process

    expected = int.from_bytes(hashlib.sha256(b"promptmix-row:0:abc:1").digest()[:8], "big") & ((1 << 63) - 1)
    assert row_seed(0, "abc", 1) == expected
    seeds = {row_seed(s, p, i) for s in (0, 1) for p in ("abc", "abd") for i in range(3)}
    assert len(seeds) == 12 and all(0 < s < 2 ** 63 for s in seeds)
    picks = [derived_choice(row_seed(0, "abc", i), "conditioning", 5) for i in range(50)]
    assert set(picks) == set(range(5))


@pytest.mark.parametrize("size,kw,expected", [
    ((1024, 768), dict(max_side=768), (768, 576)),
    ((500, 333), dict(max_side=768), (496, 336)),
    ((32, 32), dict(max_side=768, min_side=512), (512, 512)),
    ((40, 2000), dict(max_side=768, min_side=512), (16, 768)),  # max_side wins over min_side
    ((40, 24), dict(max_side=64), (40, 24)),
    ((37, 21), dict(max_side=64, multiple=8), (40, 24)),
])
def test_generation_size(size, kw, expected):
    from promptmix.generation.generate.sizes import generation_size

    assert generation_size(*size, **kw) == expected


def test_config_validation_names_the_key():
    from promptmix.errors import ConfigError

    with pytest.raises(ConfigError, match="jpeg_quality"):
        tiny_config("p.txt", "m", jpeg_quality=101)
    with pytest.raises(ConfigError, match="size"):
        tiny_config("p.txt", "m", size="64by64")
    assert tiny_config("p.txt", "m", jpeg_quality="80").jpeg_quality == 80


def test_encode_error_names_prompt_and_seed():
    from promptmix.generation.generate.encode import EncodeError, encode_row_image

    bad = np.full((8, 8, 3), np.nan, dtype=np.float32)
    with pytest.raises(EncodeError, match=r"prompt_id p123.*seed 987"):
        encode_row_image(bad, width=8, height=8, quality=90, grayscale=False, row_id="p123-00000", prompt_id="p123",
                         seed=987)


# -- a run -------------------------------------------------------------------------------------------
def _quant_tables_of(data: bytes):
    with Image.open(io.BytesIO(data)) as im:
        return im.quantization


def _reference_tables(quality: int, mode: str):
    buf = io.BytesIO()
    Image.new(mode, (16, 16)).save(buf, "JPEG", quality=quality)
    return _quant_tables_of(buf.getvalue())


def test_rows_match_source_size_quality_and_colour(bag_run):
    from promptmix.generation.generate.plan import load_generated, read_plan
    from promptmix.generation.generate.seeds import row_seed

    run_dir, config, report = bag_run
    assert (report.rows_planned, report.rows_done, report.chunks_done) == (8, 8, 3)
    table = load_generated(run_dir).cast_column(S.IMAGE, __import__("datasets").Image(decode=False))
    rows = table.to_list()
    assert [r[S.IMAGE_INDEX] for r in rows] == [0, 1] * 4
    assert len({r[S.ROW_ID] for r in rows}) == 8
    # prompt order, sources cycling over a prompt's sources, no source -> --size
    assert [r[S.SOURCE_IMAGE_ID] for r in rows] == ["s0", "s0", "s1", "s1", "s0", "s2", None, None]
    expected = {"s0": ((40, 24), 60, "RGB"), "s1": ((24, 40), 90, "L"), "s2": ((32, 32), 85, "RGB"),
                None: ((32, 24), 85, "RGB")}
    for r in rows:
        size, quality, mode = expected[r[S.SOURCE_IMAGE_ID]]
        data = r[S.IMAGE]["bytes"]
        with Image.open(io.BytesIO(data)) as im:
            assert (im.format, im.size, im.mode) == ("JPEG", size, mode), r[S.ROW_ID]
        assert (r[S.WIDTH], r[S.HEIGHT], r[S.JPEG_QUALITY]) == (*size, quality)
        assert _quant_tables_of(data) == _reference_tables(quality, mode), r[S.ROW_ID]
        assert r[S.SEED] == row_seed(config.seed, r[S.PROMPT_ID], r[S.IMAGE_INDEX])
        assert r[S.ROW_ID] == f"{r[S.PROMPT_ID]}-{r[S.IMAGE_INDEX]:05d}"
        assert r[S.LABEL] == (1 if r[S.SOURCE_IMAGE_ID] == "s1" else 0)
        assert r[S.MIXING] is None and r[S.CONDITIONING_IMAGE_ID] is None
    plan = read_plan(run_dir)
    assert (plan["num_rows"], plan["num_chunks"], plan["chunk_size"]) == (8, 3, 3)
    assert plan["class_names"] == NAMES and plan["config_hash"] == config.config_hash()


def test_manifest_records_model_config_and_versions(bag_run):
    from promptmix.run_folder import RunFolder

    run_dir, config, _ = bag_run
    stage = RunFolder(run_dir).read_manifest()["stages"]["generate"]
    assert stage["config"]["steps"] == 2 and stage["config_hash"] == config.config_hash()
    gen = stage["models"]["generator"]
    assert gen["pipeline"] == "StableDiffusionPipeline" and gen["local"] is True and "commit_hash" in gen
    assert stage["versions"]["diffusers"] and stage["versions"]["torch"]
    assert stage["rows"] == 8 and stage["complete"] is True


def test_finished_run_does_nothing_and_other_settings_are_refused(bag_run):
    from promptmix.errors import ConfigError
    from promptmix.generation.generate.runner import generate

    run_dir, config, _ = bag_run
    before = chunk_bytes(run_dir)
    report = generate(config, run_dir)
    assert (report.rows_done, report.rows_skipped, report.chunks_skipped) == (0, 8, 3)
    assert report.load_seconds == 0.0  # the model was not even loaded
    assert chunk_bytes(run_dir) == before
    changed = tiny_config(config.prompts, config.model, jpeg_quality="source", default_jpeg_quality=85, steps=3,
                          guidance_scale=2.0)
    with pytest.raises(ConfigError, match=r"guidance_scale.*steps"):
        generate(changed, run_dir)
    # a runtime setting (batch size) is not a different configuration
    assert generate(tiny_config(config.prompts, config.model, jpeg_quality="source", default_jpeg_quality=85,
                                batch_size=5), run_dir).rows_done == 0


def test_second_concurrent_run_is_refused(tmp_path, tiny_sd):
    from promptmix.errors import RunLockedError
    from promptmix.generation.generate.runner import generate
    from promptmix.run_folder import RunFolder

    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    with RunFolder(tmp_path / "run").lock("generate"):  # another run holds the folder (a separate open file)
        with pytest.raises(RunLockedError, match="another run"):
            generate(tiny_config(prompts, tiny_sd), tmp_path / "run")
    assert RunFolder(tmp_path / "run").image_chunks().list() == []
    assert generate(tiny_config(prompts, tiny_sd), tmp_path / "run").rows_done == 2


def test_txt_prompts_truncation_and_dry_run(tmp_path, tiny_sd, capsys):
    from promptmix.cli import main
    from promptmix.run_folder import RunFolder

    long = " ".join(["word"] * 100)
    prompts = tmp_path / "p.txt"
    prompts.write_text(f"a cat\n{long}\n# a comment\n")
    argv = ["generate", "--prompts", str(prompts), "--model", str(tiny_sd), "--out", str(tmp_path / "run"),
            "-k", "3", "--steps", "2", "--size", "24x24", "--chunk-size", "2", "--batch-size", "2", "--device", "cpu"]
    assert main(argv + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: 6 rows planned in 3 chunks" in out and "projected time" in out
    assert str(tmp_path / "run" / "images" / "chunk-000002.parquet") in out
    assert "truncated prompts: 1 of 2" in out
    assert not (tmp_path / "run" / "images").exists()  # a dry run writes nothing
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "rows: 6 planned, 6 generated" in out and "truncated prompts: 1 of 2" in out
    assert len(RunFolder(tmp_path / "run").image_chunks().list()) == 3
    plan = json.loads((tmp_path / "run" / "images" / "plan.json").read_text())
    assert plan["truncated_prompts"]["count"] == 1 and plan["truncated_prompts"]["max_tokens"] == 77


def test_bad_input_errors(tmp_path, tiny_sd):
    from promptmix.cli import main
    from promptmix.errors import ConfigError, InputError, ModelLoadError
    from promptmix.generation.generate.runner import generate

    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    with pytest.raises(InputError, match="no prompts"):
        generate(tiny_config(empty, tiny_sd), tmp_path / "run")
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    with pytest.raises(ModelLoadError, match="tried"):
        generate(tiny_config(prompts, tmp_path / "no-such-model"), tmp_path / "run")
    with pytest.raises(ModelLoadError, match=r"nobody/no-such-model.*tried"):
        generate(tiny_config(prompts, "nobody/no-such-model"), tmp_path / "run")
    with pytest.raises(ConfigError, match="scheduler"):
        generate(tiny_config(prompts, tiny_sd, scheduler="NoSuchScheduler"), tmp_path / "run2")
    assert main(["generate", "--prompts", str(empty), "--model", str(tiny_sd), "--out", str(tmp_path / "r")]) == 1
