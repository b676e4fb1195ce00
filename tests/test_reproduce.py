"""``promptmix reproduce``, and image-conditioned (InstructPix2Pix) generation with MVC embeddings."""

from __future__ import annotations

import json

import pytest
from test_generate import NAMES, tiny_config, tiny_sd, write_bag  # noqa: F401  (tiny_sd is a fixture)

from promptmix import schema as S


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, tiny_sd):  # noqa: F811
    from promptmix.generation.generate.runner import generate

    root = tmp_path_factory.mktemp("repro")
    bag = write_bag(root)
    generate(tiny_config(bag, tiny_sd, batch_size=3), root / "run")
    return root / "run"


@pytest.fixture(scope="module")
def pix2pix(tmp_path_factory):
    from promptmix.testing._diffusion import save_tiny_pix2pix

    return save_tiny_pix2pix(tmp_path_factory.mktemp("tiny-p2p") / "p2p")


def test_reproduce_matches_a_batched_row(plain_run, capsys):
    from promptmix.cli import main

    # row 5 was generated in a batch of 3 (rows of one size), and is regenerated alone
    assert main(["reproduce", str(plain_run), "--row", "5"]) == 0
    out = capsys.readouterr().out
    assert "MATCH" in out and "MISMATCH" not in out and "PSNR" in out


def test_reproduce_detects_an_altered_record(plain_run, tmp_path, capsys):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from promptmix.cli import main
    from promptmix.generation.generate.reproduce import reproduce_row

    run = tmp_path / "run"
    shutil.copytree(plain_run, run)
    path = run / "images" / "chunk-000000.parquet"
    table = pq.read_table(path)
    seeds = table.column(S.SEED).to_pylist()
    seeds[1] += 1
    table = table.set_column(table.schema.get_field_index(S.SEED), S.SEED, pa.array(seeds, pa.int64()))
    pq.write_table(table, path)
    result = reproduce_row(run, 1)
    assert not result.match and not result.seed_ok and result.psnr < 25
    assert main(["reproduce", str(run), "--row", "1"]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    assert reproduce_row(run, row_id=result.row_id).row == 1
    assert reproduce_row(run, 0).match


def test_reproduce_errors(plain_run):
    from promptmix.errors import InputError
    from promptmix.generation.generate.reproduce import reproduce_row

    with pytest.raises(InputError, match="0..7"):
        reproduce_row(plain_run, 8)
    with pytest.raises(InputError, match="holds no generated images|does not exist"):
        reproduce_row(plain_run.parent, 0)


def test_pix2pix_with_mvc_rows_are_conditioned_recorded_and_reproducible(tmp_path, pix2pix):
    from promptmix.errors import InputError
    from promptmix.generation.generate.config import GenerateConfig
    from promptmix.generation.generate.plan import load_generated
    from promptmix.generation.generate.reproduce import reproduce_row
    from promptmix.generation.generate.runner import generate
    from promptmix.generation.mvc import MVCConfig

    one_dog = write_bag(tmp_path / "one-dog", with_real=True)
    mvc = MVCConfig(enabled=True, images_per_class=3)
    with pytest.raises(InputError, match="class 'dog' has 1 caption"):  # refused before anything is written
        generate(tiny_config(one_dog, pix2pix, mvc=mvc), tmp_path / "one-dog" / "run")
    assert not (tmp_path / "one-dog" / "run" / "images").exists()

    bag = write_bag(tmp_path, with_real=True, second_dog=True)
    config = tiny_config(bag, pix2pix, mvc=mvc, image_guidance_scale=1.5)
    report = generate(config, tmp_path / "run")
    assert report.rows_done == 6 and report.model["pipeline"] == "StableDiffusionInstructPix2PixPipeline"
    rows = load_generated(tmp_path / "run")
    assert [r[S.LABEL] for r in rows] == [0, 0, 0, 1, 1, 1]
    class_of = {"s0": 0, "s1": 1, "s2": 0}
    cat_captions = {"a cat on a sofa", "a cat in the sun"}  # the manual cat prompt is not a caption
    for r in rows:
        assert class_of[r[S.CONDITIONING_IMAGE_ID]] == r[S.LABEL]  # a real training image of the row's class
        record = json.loads(r[S.MIXING])
        assert record["algorithm"] == "mvc-algorithm-1" and record["seed"] == r[S.SEED]
        assert record["num_embeddings"] == 2 and len(record["coarse"]) == 1 and len(record["fine"]) == 1
        name = NAMES[r[S.LABEL]]
        assert r[S.PROMPT].startswith(f"This is an image of {name}. ")
        if r[S.LABEL] == 0:
            assert r[S.PROMPT].split(". ", 1)[1] in cat_captions
        assert r[S.IMAGE].size == (r[S.WIDTH], r[S.HEIGHT])
    result = reproduce_row(tmp_path / "run", 4)
    assert result.match and result.mixing_ok, result.summary_lines()
    assert GenerateConfig.from_yaml(tmp_path / "run" / "images" / "config.yaml").mvc == mvc  # saved config round-trips


def test_pix2pix_with_text_prompts_conditions_on_the_real_dataset(tmp_path, pix2pix):
    from promptmix.generation.generate.plan import load_generated
    from promptmix.generation.generate.reproduce import reproduce_row
    from promptmix.generation.generate.runner import generate

    write_bag(tmp_path, with_real=True)  # only for its real dataset folder
    prompts = tmp_path / "p.txt"
    prompts.write_text("turn it into a painting\nmake it snow\n")
    real = str(tmp_path / f"real-{tmp_path.name}")
    report = generate(tiny_config(prompts, pix2pix, real=real, images_per_prompt=3), tmp_path / "run")
    assert report.rows_done == 6
    rows = load_generated(tmp_path / "run")
    conds = rows[S.CONDITIONING_IMAGE_ID]
    assert set(conds) <= {"s0", "s1", "s2"} and len(set(conds)) > 1  # drawn per row seed from all train images
    assert all(r[S.MIXING] is None and r[S.IMAGE].size == (32, 24) for r in rows)
    assert reproduce_row(tmp_path / "run", 2).match
