"""Tiny random annotators in their real save formats (counting folders, transformers folders).

Each writer builds the real class with a tiny configuration and seeded random weights and saves
it the way a released model is stored, so ``promptmix annotate RUN --annotator FOLDER`` loads it
through the same code path as a Hub model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

TINY_COUNTER_WIDTH_DIV = {"csrnet": 16, "dmcount": 16, "sasnet": 16}


def save_tiny_counter(path: str | Path, arch: str = "csrnet", seed: int = 0) -> Path:
    """A tiny ``arch`` counter (every channel count divided by 16) as ``config.json`` + ``model.safetensors``.

    The output layer's bias is set to a small positive value that depends on ``seed`` so that the
    random network predicts a non-zero crowd (DM-Count ends in a ReLU) and two seeds disagree.
    """
    from ..models.counting import CounterConfig, build_counter, save_counter

    config = CounterConfig.default(arch, width_div=TINY_COUNTER_WIDTH_DIV[arch])
    torch.manual_seed(seed)
    model = build_counter(config)
    with torch.no_grad():  # He init (as torchvision's VGG) keeps activations alive through the random net
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    m.bias.zero_()
    head = {"csrnet": lambda m: m.output_layer, "dmcount": lambda m: m.density_layer[0],
            "sasnet": lambda m: m.density_head1[1].conv}[arch](model)
    with torch.no_grad():
        scale = 1.0 / config.density_scale
        head.bias.fill_(0.01 * (seed + 1) * scale)
    return save_counter(model, config, path)


def save_tiny_depth(path: str | Path, seed: int = 0) -> Path:
    """A tiny GLPN depth-estimation model + its image processor, saved with ``save_pretrained``."""
    from transformers import GLPNConfig, GLPNForDepthEstimation
    from transformers import GLPNImageProcessorPil as GLPNImageProcessor  # same saved format, no torchvision

    path = Path(path)
    config = GLPNConfig(num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[4, 2, 1, 1],
                        hidden_sizes=[8, 8, 16, 16], patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2],
                        num_attention_heads=[1, 1, 1, 1], mlp_ratios=[2, 2, 2, 2], decoder_hidden_size=8,
                        head_in_index=-1, max_depth=10, drop_path_rate=0.0)
    torch.manual_seed(seed)
    model = GLPNForDepthEstimation(config).eval()
    model.save_pretrained(str(path))
    GLPNImageProcessor(size_divisor=32).save_pretrained(str(path))
    return path


def save_tiny_classifier(path: str | Path, class_names: Sequence[str] = ("cat", "dog", "bird"), seed: int = 0) -> Path:
    """A tiny ResNet image classifier whose ``id2label`` is ``class_names`` + a ViT-style processor (32 px)."""
    from transformers import ResNetConfig, ResNetForImageClassification
    from transformers import ViTImageProcessorPil as ViTImageProcessor

    path = Path(path)
    names = list(class_names)
    config = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                          layer_type="basic", num_labels=len(names),
                          id2label={i: n for i, n in enumerate(names)}, label2id={n: i for i, n in enumerate(names)})
    torch.manual_seed(seed)
    model = ResNetForImageClassification(config).eval()
    model.save_pretrained(str(path))
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.485, 0.456, 0.406],
                      image_std=[0.229, 0.224, 0.225]).save_pretrained(str(path))
    return path


def save_tiny_clip(path: str | Path, seed: int = 0) -> Path:
    """A tiny ``CLIPModel`` + tokenizer + image processor (for CLIP zero-shot annotation)."""
    from transformers import CLIPConfig, CLIPModel
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor

    from ._tokenizers import save_tiny_clip_tokenizer

    path = Path(path)
    tok = save_tiny_clip_tokenizer(path)
    text = dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=77, projection_dim=16,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                  image_size=32, patch_size=8, projection_dim=16)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    torch.manual_seed(seed)
    CLIPModel(config).eval().save_pretrained(str(path))
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(str(path))
    return path


def write_generated_run(run_dir: str | Path, images: Sequence, *, task: str = "counting",
                        class_names: Sequence[str] = (), labels: Sequence[int | None] | None = None,
                        chunk_size: int = 4) -> Path:
    """A run folder with ``RUN/images`` holding ``images`` (PIL) as generated chunks, for annotation tests.

    Rows are ``schema.GENERATED`` rows (JPEG bytes, prompt ids ``p0``, ``p1``, ...) split into chunks
    of ``chunk_size``; ``plan.json`` carries the task and class names.
    """
    import io

    from .. import schema as S
    from ..generation.generate.plan import PLAN_FILE, chunk_table
    from ..run_folder import RunFolder
    from ..utils.io import write_json_atomic

    run = RunFolder(run_dir)
    rows = []
    for i, im in enumerate(images):
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="JPEG", quality=90)
        prompt_id = f"p{i // 2}"
        rows.append({S.ROW_ID: f"{prompt_id}-{i % 2:05d}", S.IMAGE: {"bytes": buf.getvalue(), "path": None},
                     S.PROMPT: f"prompt {i // 2}", S.PROMPT_ID: prompt_id, S.IMAGE_INDEX: i % 2,
                     S.SOURCE_IMAGE_ID: None, S.LABEL: None if labels is None else labels[i], S.SEED: 1000 + i,
                     S.WIDTH: im.width, S.HEIGHT: im.height, S.JPEG_QUALITY: 90, S.MIXING: None,
                     S.CONDITIONING_IMAGE_ID: None})
    starts = range(0, len(rows), chunk_size)
    for c, start in enumerate(starts):
        run.image_chunks().write(c, chunk_table(rows[start:start + chunk_size]))
    write_json_atomic(run.images / PLAN_FILE, {
        "num_rows": len(rows), "num_chunks": len(starts), "chunk_size": chunk_size, "task": task,
        "class_names": list(class_names) if task == "classification" else None})
    return run.root
