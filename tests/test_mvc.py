"""Mixing Visual Concepts (Algorithm 1): sampling, what each op changes, replay, encoding as SD does."""

from __future__ import annotations

import collections
import json

import datasets
import pytest
import torch

from promptmix import schema
from promptmix.errors import ConfigError, InputError
from promptmix.generation.mvc import MVCConfig, captions_by_class, encode_texts, mix_embedding, replay_mixing


@pytest.fixture
def emb():
    g = torch.Generator().manual_seed(0)
    return torch.randn(5, 12, 16, generator=g)


def test_shapes_and_json_record_replays_bit_identically(emb):
    out, record = mix_embedding(emb, seed=7, coarse=3, fine=4)
    assert out.shape == (12, 16) and out.dtype == emb.dtype
    text = json.dumps(record)
    assert torch.equal(replay_mixing(emb, json.loads(text)), out)
    assert torch.equal(replay_mixing(emb, text), out)
    assert record["seed"] == 7 and len(record["coarse"]) == 3 and len(record["fine"]) == 4
    again, record2 = mix_embedding(emb, seed=7, coarse=3, fine=4)
    assert record2 == record and torch.equal(again, out)


def test_coarse_op_copies_rows_r_to_s_from_another_caption(emb):
    for seed in range(30):
        out, rec = mix_embedding(emb, seed=seed, coarse=1, fine=0)
        (op,) = rec["coarse"]
        base, src, r, s = rec["base"], op["src"], op["r"], op["s"]
        assert src != base and 1 <= r < s <= 12
        assert torch.equal(out[r - 1:s], emb[src, r - 1:s])  # rows r..s, 1-based inclusive
        keep = torch.ones(12, dtype=torch.bool)
        keep[r - 1:s] = False
        assert torch.equal(out[keep], emb[base][keep])


def test_fine_op_changes_only_elements_u_to_v_of_one_row(emb):
    for seed in range(30):
        out, rec = mix_embedding(emb, seed=seed, coarse=0, fine=1, fine_max_span=4)
        (op,) = rec["fine"]
        base, src, w, u, v = rec["base"], op["src"], op["row"], op["u"], op["v"]
        assert src != base and 1 <= w <= 12 and 1 <= u < v <= 16 and v - u + 1 <= 4
        assert torch.equal(out[w - 1, u - 1:v], emb[src, w - 1, u - 1:v])
        changed = (out != emb[base]).nonzero().tolist()
        assert changed and all(row == w - 1 and u - 1 <= col < v for row, col in changed)


def test_seeds_differ_and_base_can_be_fixed(emb):
    outs = [mix_embedding(emb, seed=s, coarse=1, fine=1)[0] for s in range(6)]
    assert len({tuple(o.flatten().tolist()) for o in outs}) == 6
    bases = {mix_embedding(emb, seed=s, coarse=1, fine=1)[1]["base"] for s in range(40)}
    assert bases == set(range(5))  # line 4: base drawn from every caption
    _, rec = mix_embedding(emb, seed=3, coarse=2, fine=2, base=2)
    assert rec["base"] == 2 and all(op["src"] != 2 for op in rec["coarse"] + rec["fine"])


def test_no_mixing_returns_the_base_caption_embedding(emb):
    out, rec = mix_embedding(emb, seed=1, coarse=0, fine=0, base=3)
    assert torch.equal(out, emb[3]) and rec["coarse"] == [] and rec["fine"] == []
    single = emb[:1]
    assert torch.equal(mix_embedding(single, seed=0, coarse=0, fine=0)[0], single[0])


def test_pairs_are_uniform_over_r_less_than_s():
    emb = torch.randn(3, 4, 8)
    counts = collections.Counter()
    for seed in range(3000):
        (op,) = mix_embedding(emb, seed=seed, coarse=1, fine=0)[1]["coarse"]
        counts[(op["r"], op["s"])] += 1
    assert set(counts) == {(1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)}
    assert all(400 < c < 600 for c in counts.values())  # 500 expected each
    spans = collections.Counter()
    for seed in range(2000):
        (op,) = mix_embedding(emb, seed=seed, coarse=0, fine=1, fine_max_span=3)[1]["fine"]
        spans[op["v"] - op["u"] + 1] += 1
    # allowed pairs of 1..8 with span 2: 7, span 3: 6 -> probabilities 7/13 and 6/13
    assert set(spans) == {2, 3} and abs(spans[2] / 2000 - 7 / 13) < 0.05


def test_bad_inputs(emb):
    with pytest.raises(InputError, match="at least 2 caption embeddings"):
        mix_embedding(emb[:1], seed=0, coarse=1, fine=0)
    with pytest.raises(InputError, match=r"\[N, L, D\]"):
        mix_embedding(emb[0], seed=0, coarse=1, fine=0)
    _, rec = mix_embedding(emb, seed=0, coarse=1, fine=1)
    with pytest.raises(InputError, match="made from 5 embeddings"):
        replay_mixing(emb[:4], rec)
    with pytest.raises(ConfigError, match="fine_max_span"):
        MVCConfig(fine_max_span=1)
    with pytest.raises(ConfigError, match="coarse"):
        MVCConfig.from_dict({"coarse": -1})


def test_config_prefix_and_mix(emb):
    cfg = MVCConfig.from_dict({"enabled": True, "coarse": 2, "fine": 3, "fine_max_span": 2})
    assert cfg.class_texts(["a cat on a sofa"], "cat") == ["This is an image of cat. a cat on a sofa"]
    assert MVCConfig(caption_prefix="").class_texts(["x"], "cat") == ["x"]
    out, rec = cfg.mix(emb, seed=5, ids=["p0", "p1", "p2", "p3", "p4"])
    assert len(rec["coarse"]) == 2 and all(op["v"] - op["u"] == 1 for op in rec["fine"])
    assert rec["base_id"] == f"p{rec['base']}" and all(op["src_id"] == f"p{op['src']}" for op in rec["fine"])
    assert torch.equal(out, replay_mixing(emb, rec))
    assert MVCConfig.from_dict(cfg.to_dict()) == cfg


def test_captions_by_class_uses_caption_rows_once():
    rows = {schema.PROMPT_ID: ["p1", "p2", "p3", "p4", "p5"],
            schema.PROMPT: ["x, bw", "x, color", "y", "m", "z"],
            schema.BASE_TEXT: ["x", "x", "y", "m", "z"],
            schema.ORIGIN: ["caption", "caption", "caption", "manual", "class"],
            schema.SOURCE_IMAGE_IDS: [["a"], ["b"], ["c"], [], ["d"]],
            schema.LABEL: [0, 0, 1, None, 1]}
    ds = datasets.Dataset.from_dict(rows, features=schema.PROMPTS)
    assert captions_by_class(ds) == {0: [("p1", "x")], 1: [("p3", "y")]}  # class/manual rows are not captions


def test_encode_texts_matches_stable_diffusion_encode_prompt_and_drives_the_pipeline(tmp_path):
    from diffusers import StableDiffusionPipeline

    from promptmix.testing._diffusion import save_tiny_sd

    pipe = StableDiffusionPipeline.from_pretrained(str(save_tiny_sd(tmp_path / "sd")))
    pipe.set_progress_bar_config(disable=True)
    texts = ["This is an image of cat. a cat on a sofa", "This is an image of cat. a cat", "a photo of a cat"]
    emb = encode_texts(pipe.tokenizer, pipe.text_encoder, texts)
    assert emb.shape == (3, 77, pipe.text_encoder.config.hidden_size)
    ref, _ = pipe.encode_prompt(texts, device=torch.device("cpu"), num_images_per_prompt=1,
                                do_classifier_free_guidance=False)
    assert torch.equal(emb, ref)
    batched = encode_texts(pipe.tokenizer, pipe.text_encoder, texts, batch_size=2)
    torch.testing.assert_close(batched, ref)  # other batch sizes: equal up to float rounding
    mixed, _ = mix_embedding(emb, seed=0, coarse=1, fine=1, fine_max_span=9)
    gen = torch.Generator().manual_seed(0)
    image = pipe(prompt_embeds=mixed[None], num_inference_steps=2, height=64, width=64, generator=gen,
                 output_type="np").images
    assert image.shape == (1, 64, 64, 3)
