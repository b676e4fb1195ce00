"""The prompt bag: every modifier, dedupe, prompt ids, loading, truncation counting, CLI."""

from __future__ import annotations

import hashlib
import json

import datasets
import pytest
import yaml

from promptmix import schema
from promptmix.errors import ConfigError, InputError
from promptmix.generation.prompts.bag import (PromptsConfig, build_prompt_bag, count_truncated, expand_placeholders,
                                              load_prompt_bag, prompt_id, report_truncated)
from promptmix.run_folder import RunFolder

# image_id, caption, label, grayscale
CAPTIONS = [
    ("a", "people on a street", 0, True),
    ("b", "people on a street", 0, False),
    ("c", "people on a street", 0, False),
    ("d", "a dog in a park", 1, False),
    ("e", "people on a street", 1, False),
    ("f", "  ", 1, True),  # an empty caption is skipped
]


def _write_captions(run, rows=CAPTIONS, task="classification", class_names=("cat", "dog")):
    cap = run / "captions"
    cap.mkdir(parents=True)
    labelled = task == "classification"
    datasets.Dataset.from_dict({
        schema.IMAGE_ID: [r[0] for r in rows], schema.CAPTION: [r[1] for r in rows],
        schema.LABEL: [r[2] if labelled else None for r in rows], schema.CAPTIONER: ["tiny"] * len(rows),
    }, features=schema.CAPTIONS).to_parquet(str(cap / "captions.parquet"))
    datasets.Dataset.from_dict({
        schema.IMAGE_ID: [r[0] for r in rows], schema.LABEL: [r[2] if labelled else None for r in rows],
        schema.WIDTH: [64] * len(rows), schema.HEIGHT: [48] * len(rows), schema.JPEG_QUALITY: [75] * len(rows),
        schema.IS_GRAYSCALE: [r[3] for r in rows],
    }, features=schema.SOURCES).to_parquet(str(cap / "sources.parquet"))
    info = {"task": task, "class_names": list(class_names) if labelled else None,
            "real": {"ref": "real", "revision": None, "split": "train"}}
    (cap / "info.json").write_text(json.dumps(info))
    return run


@pytest.fixture
def cls_run(tmp_path):
    return _write_captions(tmp_path / "run")


@pytest.fixture
def count_run(tmp_path):
    return _write_captions(tmp_path / "crun", task="counting")


def _rows(out):
    bag = load_prompt_bag(out)
    return [dict(r) for r in bag.prompts], bag


def test_prompt_id_is_a_stable_hash_of_text_and_label():
    assert prompt_id("large crowd") == hashlib.sha256(b"large crowd").hexdigest()[:16]
    assert prompt_id("a cat", 1) == hashlib.sha256("a cat\x1flabel=1".encode()).hexdigest()[:16]
    assert len({prompt_id("a cat"), prompt_id("a cat", 0), prompt_id("a cat", 1),
                prompt_id("a cat", 1, repeat=1)}) == 4


def test_captions_with_prefix_and_grayscale_suffix_per_source(count_run):
    config = PromptsConfig(prefix="large crowd", suffix="grayscale")
    rows, bag = _rows(build_prompt_bag(config, count_run))
    by_text = {r[schema.PROMPT]: r for r in rows}
    gray = by_text["large crowd, people on a street, black and white image"]
    color = by_text["large crowd, people on a street, color image"]
    assert gray[schema.SOURCE_IMAGE_IDS] == ["a"]
    assert color[schema.SOURCE_IMAGE_IDS] == ["b", "c", "e"]  # merged in order (counting: no labels)
    assert color[schema.BASE_TEXT] == "people on a street" and color[schema.ORIGIN] == "caption"
    assert color[schema.PROMPT_ID] == prompt_id(color[schema.PROMPT]) and color[schema.LABEL] is None
    assert by_text["large crowd, a dog in a park, color image"][schema.SOURCE_IMAGE_IDS] == ["d"]
    assert len(rows) == 3
    assert bag.info["counts"] == {"caption": 5, "class": 0, "manual": 0, "template": 0, "empty_captions": 1,
                                  "duplicates_merged": 2, "total": 3}
    assert bag.task == "counting" and bag.sources["a"][schema.IS_GRAYSCALE] is True
    assert bag.sources["d"][schema.WIDTH] == 64


def test_suffix_wording_and_separator_are_configurable(count_run):
    config = PromptsConfig(suffix="grayscale", grayscale_suffix="grayscale photo", color_suffix="in colour",
                             separator=" | ", prefix="crowd")
    rows, _ = _rows(build_prompt_bag(config, count_run))
    assert {r[schema.PROMPT] for r in rows} == {"crowd | people on a street | grayscale photo",
                                                "crowd | people on a street | in colour",
                                                "crowd | a dog in a park | in colour"}


def test_same_text_under_two_labels_is_not_merged(cls_run):
    rows, _ = _rows(build_prompt_bag(PromptsConfig(), cls_run))
    street = [r for r in rows if r[schema.PROMPT] == "people on a street"]
    assert [(r[schema.LABEL], r[schema.SOURCE_IMAGE_IDS]) for r in street] == [(0, ["a", "b", "c"]), (1, ["e"])]
    assert street[0][schema.PROMPT_ID] == prompt_id("people on a street", 0) != street[1][schema.PROMPT_ID]


def test_class_templates(cls_run):
    config = PromptsConfig(use_captions=False, suffix="grayscale",
                             class_templates=["a photo of a {label}", "{label}, {caption}"])
    rows, bag = _rows(build_prompt_bag(config, cls_run))
    got = {(r[schema.PROMPT], r[schema.LABEL]): r[schema.SOURCE_IMAGE_IDS] for r in rows}
    assert got[("a photo of a cat, black and white image", 0)] == ["a"]
    assert got[("a photo of a cat, color image", 0)] == ["b", "c"]
    assert got[("a photo of a dog, color image", 1)] == ["d", "e"]
    assert got[("a photo of a dog, black and white image", 1)] == ["f"]  # its caption is empty; the class still counts
    assert got[("cat, people on a street, color image", 0)] == ["b", "c"]
    assert got[("dog, a dog in a park, color image", 1)] == ["d"]
    assert got[("dog, people on a street, color image", 1)] == ["e"]
    assert {r[schema.ORIGIN] for r in rows} == {"class"}
    assert len(rows) == 8 and bag.class_names == ["cat", "dog"]


def test_class_templates_need_classification(count_run):
    with pytest.raises(ConfigError, match="class_templates: need a classification dataset"):
        build_prompt_bag(PromptsConfig(class_templates=["a photo of a {label}"]), count_run)
    with pytest.raises(ConfigError, match="class_templates"):
        PromptsConfig(class_templates=["a photo of {animal}"])


def test_manual_prompts_placeholders_and_file(tmp_path):
    f = tmp_path / "manual.txt"
    f.write_text("# my prompts\n\nlarge crowd in [location]\n  a [room] interior at [time]  \nlarge crowd\n")
    config = PromptsConfig(use_captions=False, manual=["large crowd"], manual_file=f, prefix="photo",
                             locations=["mecca", "a stadium"],
                             placeholders={"room": ["kitchen", "bathroom"], "time": ["night"]})
    rows, bag = _rows(build_prompt_bag(config, tmp_path / "run"))  # no captions needed
    assert [(r[schema.PROMPT], r[schema.ORIGIN]) for r in rows] == [
        ("photo, large crowd", "manual"),
        ("photo, large crowd in mecca", "template"),
        ("photo, large crowd in a stadium", "template"),
        ("photo, a kitchen interior at night", "template"),
        ("photo, a bathroom interior at night", "template"),
    ]
    assert all(r[schema.SOURCE_IMAGE_IDS] == [] and r[schema.LABEL] is None for r in rows)
    assert rows[1][schema.BASE_TEXT] == "large crowd in mecca"
    assert bag.info["counts"]["duplicates_merged"] == 1
    rows, _ = _rows(build_prompt_bag(PromptsConfig(use_captions=False, manual=["crowd"], prefix="big",
                                                     prefix_manual=False), tmp_path / "run"))
    assert [r[schema.PROMPT] for r in rows] == ["crowd"]


def test_placeholder_errors(tmp_path):
    assert expand_placeholders("[a] and [b] and [a]", {"a": ["1", "2"], "b": ["x"]}) == ["1 and x and 1",
                                                                                     "2 and x and 2"]
    with pytest.raises(ConfigError, match=r"\[location\] has no values.*--location VALUE"):
        build_prompt_bag(PromptsConfig(use_captions=False, manual=["crowd in [location]"]), tmp_path)
    with pytest.raises(InputError, match="nope.txt does not exist"):
        build_prompt_bag(PromptsConfig(use_captions=False, manual_file=tmp_path / "nope.txt"), tmp_path)


def test_dedupe_off_keeps_repeats_with_unique_ids(count_run):
    rows, _ = _rows(build_prompt_bag(PromptsConfig(dedupe=False), count_run))
    assert len(rows) == 5
    ids = [r[schema.PROMPT_ID] for r in rows]
    assert len(set(ids)) == 5
    assert ids[0] == prompt_id("people on a street")
    assert ids[1] == prompt_id("people on a street", repeat=1)


def test_max_prompts_is_a_seeded_subset_in_bag_order(tmp_path):
    manual = [f"prompt {i}" for i in range(20)]
    a, _ = _rows(build_prompt_bag(PromptsConfig(use_captions=False, manual=manual, max_prompts=5), tmp_path / "x"))
    b, _ = _rows(build_prompt_bag(PromptsConfig(use_captions=False, manual=manual, max_prompts=5), tmp_path / "y"))
    c, _ = _rows(build_prompt_bag(PromptsConfig(use_captions=False, manual=manual, max_prompts=5, seed=1),
                                  tmp_path / "z"))
    texts = [r[schema.PROMPT] for r in a]
    assert len(texts) == 5 and texts == [r[schema.PROMPT] for r in b]
    assert texts == sorted(texts, key=lambda t: int(t.split()[1]))
    assert texts != [r[schema.PROMPT] for r in c]


def test_empty_bag_and_missing_captions_are_clear_errors(tmp_path, count_run):
    with pytest.raises(InputError, match="prompt bag is empty"):
        build_prompt_bag(PromptsConfig(use_captions=False), count_run)
    with pytest.raises(InputError, match="promptmix caption"):
        build_prompt_bag(PromptsConfig(), tmp_path / "no-run")


def test_outputs_config_and_manifest(count_run, tmp_path):
    config = PromptsConfig(prefix="large crowd", manual=["x"])
    out = build_prompt_bag(config, count_run / "captions", tmp_path / "bag")  # a captions folder works too
    assert sorted(p.name for p in out.iterdir()) == [".promptmix-output.json", "config.yaml", "info.json",
                                                     "prompts.parquet", "sources.parquet"]
    assert PromptsConfig.from_yaml(out / "config.yaml") == config
    assert RunFolder(count_run).read_manifest()["stages"]["prompts"]["counts"]["total"] == 3
    assert load_prompt_bag(out).prompts.features == schema.PROMPTS


def test_load_prompt_bag_from_run_folder_and_txt(count_run, tmp_path):
    build_prompt_bag(PromptsConfig(), count_run)
    assert len(load_prompt_bag(count_run)) == len(load_prompt_bag(count_run / "prompts")) == 2
    assert load_prompt_bag(count_run / "prompts" / "prompts.parquet").info["task"] == "counting"
    txt = tmp_path / "p.txt"
    txt.write_text("# header\nlarge crowd\n\nlarge crowd in mecca\nlarge crowd\n")
    bag = load_prompt_bag(txt)
    assert bag.texts == ["large crowd", "large crowd in mecca"]
    assert bag.prompts[schema.PROMPT_ID] == [prompt_id("large crowd"), prompt_id("large crowd in mecca")]
    assert set(bag.prompts[schema.ORIGIN]) == {"manual"} and bag.sources == {}
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(InputError, match="empty.txt holds no prompts"):
        load_prompt_bag(empty)
    with pytest.raises(InputError, match="expected a prompt bag folder"):
        load_prompt_bag(tmp_path)


def test_truncation_is_counted_with_a_clip_tokenizer(tmp_path, caplog):
    from promptmix.testing._tokenizers import save_tiny_clip_tokenizer

    tok = save_tiny_clip_tokenizer(tmp_path / "tok")
    assert tok.model_max_length == 77
    short = "large crowd"
    long = " ".join(["crowd"] * 80)
    edge = " ".join(["crowd"] * 75)  # 75 words + BOS + EOS = 77 tokens: fits exactly
    assert len(tok(edge)["input_ids"]) == 77
    assert count_truncated(tok, [short, long, edge, long + " x"]) == 2
    assert count_truncated(tok, [short, edge], max_length=10) == 1
    with caplog.at_level("WARNING"):
        assert report_truncated(tok, [long, short]) == 1
    assert "1 of 2 prompts are longer than 77 tokens" in caplog.text
    out = build_prompt_bag(PromptsConfig(use_captions=False, manual=[short, long]), tmp_path / "r", tokenizer=tok)
    counts = load_prompt_bag(out).info["counts"]
    assert counts["truncated"] == 1 and counts["max_tokens"] == 77


def test_cli_prompts_summary_and_config_file(count_run, tmp_path, capsys):
    from promptmix.cli import main

    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"prompts": {"prefix": "large crowd", "suffix": "grayscale", "manual": ["m"]}}))
    rc = main(["prompts", "--run", str(count_run), "--config", str(cfg), "--prefix", "huge crowd",
               "--manual", "crowd in [location]", "--location", "mecca", "--no-prefix-manual"])
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote 5 prompts to {count_run / 'prompts'}")
    assert "5 from captions" in line and "1 manual" in line and "1 from [placeholder] templates" in line
    assert "2 duplicates merged" in line and "truncation not checked" in line
    texts = load_prompt_bag(count_run).texts
    assert "huge crowd, a dog in a park, color image" in texts and "m" in texts and "crowd in mecca" in texts
    assert main(["prompts", "--run", str(tmp_path / "nothing")]) == 1
    assert "promptmix caption" in capsys.readouterr().err


# -- without captions: metadata from the real dataset ----------------------------------------------------
@pytest.fixture(scope="module")
def real_cls(tmp_path_factory):
    from promptmix.testing.synthetic import write_real_dataset

    return write_real_dataset(tmp_path_factory.mktemp("real") / "cls", "classification", class_names=("cat", "dog"),
                              sizes={"train": 6, "test": 2}, size=(24, 32))


def test_label_prompts_from_the_real_dataset_without_captions(real_cls, tmp_path):
    from promptmix.builders import load_real
    from promptmix.generation.caption.captioner import source_rows

    config = PromptsConfig(use_captions=False, class_templates=["a photo of a {label}"], suffix="grayscale")
    assert not config.needs_captions()
    out = build_prompt_bag(config, None, tmp_path / "run" / "prompts", real=str(real_cls))
    rows, bag = _rows(out)
    train = load_real(str(real_cls))["train"]
    assert bag.task == "classification" and bag.class_names == ["cat", "dog"]
    assert bag.info["real"] == {"ref": str(real_cls), "revision": None, "split": "train"}
    # the sources are the train split's rows, as `promptmix caption` writes them (one code path: source_rows)
    expected = {r[schema.IMAGE_ID]: {k: v for k, v in r.items() if k != schema.IMAGE_ID}
                for r in source_rows(train, "classification")}
    assert bag.sources == expected and len(expected) == 6
    by_label: dict[int, set] = {}
    for r in rows:
        assert r[schema.PROMPT].startswith("a photo of a " + ["cat", "dog"][r[schema.LABEL]])
        by_label.setdefault(r[schema.LABEL], set()).update(r[schema.SOURCE_IMAGE_IDS])
    assert by_label == {y: {i for i, s in expected.items() if s[schema.LABEL] == y} for y in (0, 1)}
    assert RunFolder(tmp_path / "run").read_manifest()["stages"]["prompts"]["counts"]["class"] == len(rows)


def test_captions_are_needed_for_use_captions_and_caption_templates(real_cls, tmp_path):
    with pytest.raises(ConfigError, match="use_captions: true needs captions, but the prompt bag is built from the "
                                          "real dataset"):
        build_prompt_bag(PromptsConfig(), None, tmp_path / "p", real=str(real_cls))
    with pytest.raises(ConfigError, match=r"a class template with \{caption\} needs captions"):
        build_prompt_bag(PromptsConfig(use_captions=False, class_templates=["{label}, {caption}"]), None,
                         tmp_path / "p", real=str(real_cls))
    assert not (tmp_path / "p").exists()
    # a run folder without captions and a {label} template: no class names to fill it, and the way to get them
    with pytest.raises(ConfigError, match=r"give the real dataset \(`promptmix prompts --real DIR`\)"):
        build_prompt_bag(PromptsConfig(use_captions=False, class_templates=["a {label}"]), tmp_path / "empty-run")


def test_cli_prompts_from_the_real_dataset(real_cls, tmp_path, capsys):
    from promptmix.cli import main

    out = tmp_path / "run" / "prompts"
    assert main(["prompts", "--real", str(real_cls), "--out", str(out), "--no-captions",
                 "--manual", "bedroom interior", "--class-template", "a {label}"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote 3 prompts to {out} (0 from captions, 2 from class templates")
    assert load_prompt_bag(out).info["task"] == "classification"
    assert main(["prompts", "--real", str(real_cls), "--no-captions", "--manual", "x"]) == 1
    assert "--out: required with --real" in capsys.readouterr().err
    assert main(["prompts", "--real", str(real_cls), "--out", str(out)]) == 1  # captions are prompts by default
    assert "needs captions" in capsys.readouterr().err
