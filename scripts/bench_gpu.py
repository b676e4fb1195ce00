#!/usr/bin/env python
"""Benchmark: generation and annotation images/s on a CUDA GPU, each against its compute bound.

What it measures (at most about 8 minutes on one GPU; ``--budget-s``):

- ``generate``: Stable Diffusion 1.5 at 512x512, 50 steps, and SDXL base at 1024x1024, 30 steps, both
  with classifier-free guidance (7.5 / 5.0), at batch 1, 8 and 16, for each speed option of
  ``promptmix generate`` (``generation/generate/speed.py`` applies them, as a run does): float16 +
  SDPA (the default path), eager attention, bfloat16, channels-last, fused QKV, torch.compile, and all
  of them together. The pipelines are built from the published ``unet``/``vae``/``text_encoder``
  configs (their numbers are written below) with random weights: the compute is the same as with
  the real weights, and nothing is downloaded. The tokenizer is promptmix's tiny CLIP tokenizer
  (token ids only feed an embedding lookup, so its vocabulary does not change the compute).
- ``annotate``: full-width CSRNet and SASNet (random weights, promptmix's own architectures) over
  a run folder of 1024x768 JPEGs through ``annotate_run`` (decode, batch, forward, write), beside
  the same networks' forward alone on ready tensors; their ratio is how busy annotation keeps the GPU.

Each figure is printed beside its compute bound: FLOPs per image counted with
``torch.utils.flop_counter`` (denoiser x steps x 2 for guidance + text encoders + VAE decode) and the
device's peak dense bf16/fp16 tensor TFLOP/s (the NVIDIA datasheet values below; ``--peak-tflops``
for other devices), plus the TFLOP/s a large matmul reaches here (a practical ceiling).

On a machine without CUDA it runs at toy size (narrow networks, 64x64, 2 steps, batch 1 and 2;
compile skipped: inductor takes minutes on a CPU) so that it is tested (``tests/test_bench_gpu.py``);
its figures then say nothing about GPUs. ``run(quick)`` gives the rows of ``scripts/bench.py``.

    python scripts/bench_gpu.py                  # CUDA: full size, budgeted to about 8 minutes
    python scripts/bench_gpu.py --toy            # toy size anywhere
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

# -- published configs (diffusers layout), random weights ---------------------------------------------------
#: runwayml/stable-diffusion-v1-5: unet/config.json, vae/config.json, text_encoder/config.json
SD15 = {
    "unet": dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8, cross_attention_dim=768,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                 norm_num_groups=32, norm_eps=1e-5, act_fn="silu", flip_sin_to_cos=True, freq_shift=0,
                 downsample_padding=1, mid_block_scale_factor=1),
    "vae": dict(sample_size=512, in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, act_fn="silu", scaling_factor=0.18215),
    "text_encoder": dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                         projection_dim=768),
    "size": 512, "steps": 50, "guidance": 7.5,
}
#: stabilityai/stable-diffusion-xl-base-1.0: unet, vae, text_encoder (CLIP ViT-L), text_encoder_2 (OpenCLIP bigG)
SDXL = {
    "unet": dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 transformer_layers_per_block=(1, 2, 10), use_linear_projection=True, addition_embed_type="text_time",
                 addition_embed_type_num_heads=64, addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816, norm_num_groups=32, act_fn="silu"),
    "vae": dict(sample_size=1024, in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, act_fn="silu", scaling_factor=0.13025,
                force_upcast=True),
    "text_encoder": dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                         projection_dim=768),
    "text_encoder_2": dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                           num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280),
    "size": 1024, "steps": 30, "guidance": 5.0,
}
#: toy versions (CPU): the same block structure, narrow
TOY_SD15 = {
    "unet": {**SD15["unet"], "block_out_channels": (16, 32, 32, 32), "layers_per_block": 1, "norm_num_groups": 8,
             "attention_head_dim": 4, "cross_attention_dim": 32},
    "vae": {**SD15["vae"], "block_out_channels": (8, 16, 16, 16), "layers_per_block": 1, "norm_num_groups": 4},
    "text_encoder": {**SD15["text_encoder"], "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "projection_dim": 32},
    "size": 64, "steps": 2, "guidance": 7.5,
}
TOY_SDXL = {
    "unet": {**SDXL["unet"], "block_out_channels": (16, 32, 32), "layers_per_block": 1, "norm_num_groups": 8,
             "attention_head_dim": (2, 4, 4), "transformer_layers_per_block": (1, 1, 2), "cross_attention_dim": 64,
             "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 6 * 8 + 32},
    "vae": {**SDXL["vae"], "block_out_channels": (8, 16, 16, 16), "layers_per_block": 1, "norm_num_groups": 4},
    "text_encoder": {**TOY_SD15["text_encoder"]},
    "text_encoder_2": {**SDXL["text_encoder_2"], "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "projection_dim": 32},
    "size": 64, "steps": 2, "guidance": 5.0,
}

#: NVIDIA datasheets: dense (no sparsity) BF16/FP16 tensor-core TFLOP/s; the first name contained in
#: ``torch.cuda.get_device_name()`` wins, so longer names come first
PEAK_TFLOPS = (
    ("B200", 2250.0), ("H200", 989.0), ("GH200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0),
    ("H100", 989.0), ("H800", 989.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0),
    ("L4", 121.0), ("A10", 125.0), ("RTX 4090", 165.0), ("V100", 125.0), ("T4", 65.0),
)

OPTIONS = {  # name -> generate.speed settings (SpeedConfig; dtype is handled by the benchmark)
    "plain": {},  # the default path: float16 on CUDA (float32 on CPU), SDPA attention
    "eager attention": {"attention": "eager"},
    "bf16": {},
    "channels_last": {"channels_last": True},
    "fuse_qkv": {"fuse_qkv": True},
    "compile": {"compile": "default"},
    "all (channels_last+fuse_qkv+compile)": {"channels_last": True, "fuse_qkv": True, "compile": "default"},
}
#: torch.compile mode of the compiled measurements ("default" compiles in about a minute per shape;
#: max-autotune may be faster and takes several minutes to tune: --compile-mode)
COUNTERS = ("csrnet", "sasnet")


def peak_tflops(device, override: float | None = None) -> tuple[float | None, str]:
    import torch

    if override:
        return float(override), "--peak-tflops"
    if device.type != "cuda":
        return None, "no datasheet peak for a CPU"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_TFLOPS:
        if key in name:
            return value, f"{name}: datasheet dense bf16/fp16"
    return None, f"{name}: not in PEAK_TFLOPS (pass --peak-tflops)"


def matmul_tflops(device, dtype) -> float:
    """TFLOP/s of a large square matmul here (best of 5): the practical ceiling of this device."""
    import torch

    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(6):
        _sync(device)
        t0 = time.perf_counter()
        (a @ b).sum()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e12


def _flops(n: float) -> str:
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.3g} FLOP"


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- pipelines ------------------------------------------------------------------------------------------------
def build_pipeline(spec: dict, device, dtype, tmp: Path):
    """SD 1.5 (one text encoder) or SDXL (two) from ``spec`` with random weights, on ``device`` in ``dtype``."""
    import torch
    from diffusers import (AutoencoderKL, EulerDiscreteScheduler, PNDMScheduler, StableDiffusionPipeline,
                           StableDiffusionXLPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from promptmix.testing._tokenizers import save_tiny_clip_tokenizer

    tok = save_tiny_clip_tokenizer(tmp / "tokenizer")
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the GPU: seconds instead of minutes for SDXL's 2.6 B weights
        unet = UNet2DConditionModel(**spec["unet"])
        vae = AutoencoderKL(**spec["vae"])
        text = CLIPTextModel(CLIPTextConfig(**spec["text_encoder"], **ids))
        text2 = (CLIPTextModelWithProjection(CLIPTextConfig(**spec["text_encoder_2"], **ids))
                 if "text_encoder_2" in spec else None)
    betas = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    if text2 is None:
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                       scheduler=PNDMScheduler(**betas, skip_prk_steps=True, set_alpha_to_one=False),
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    else:
        tok2 = copy.deepcopy(tok)
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text, text_encoder_2=text2, tokenizer=tok, tokenizer_2=tok2,
                                         unet=unet, scheduler=EulerDiscreteScheduler(**betas, timestep_spacing="leading"))
    pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _eager_attention(unet):
    from diffusers.models.attention_processor import AttnProcessor

    unet.set_attn_processor(AttnProcessor())


def _reset(pipe, dtype) -> None:
    """Undo the non-compile options: default SDPA processors, unfused, contiguous, ``dtype``."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet = pipe.unet
    if getattr(unet, "original_attn_processors", None) is not None:
        unet.unfuse_qkv_projections()
    unet.set_attn_processor(AttnProcessor2_0())
    for module in (unet, pipe.vae):
        module.to(memory_format=torch.contiguous_format)
    if unet.dtype != dtype:
        pipe.to(dtype=dtype)


def count_flops(pipe, spec: dict) -> dict:
    """FLOPs of one image: denoiser x steps x 2 (guidance), text encoder(s) x 2 prompts, VAE decode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device = pipe.unet.device
    _eager_attention(pipe.unet)  # plain matmuls, which every torch version's counter knows
    side = spec["size"] // pipe.vae_scale_factor
    latents = torch.randn(2, 4, side, side, device=device, dtype=pipe.unet.dtype)
    texts = ["a photo of a crowd in the street", ""]
    out = {}
    with torch.inference_mode():
        with FlopCounterMode(display=False) as fc:
            emb = pipe.encode_prompt(texts[0], device, 1, True, texts[1]) if not hasattr(pipe, "text_encoder_2") \
                else pipe.encode_prompt(texts[0], device=device, do_classifier_free_guidance=True, negative_prompt="")
        out["text"] = fc.get_total_flops()
        cond = torch.cat([emb[1], emb[0]])
        kwargs = {}
        if hasattr(pipe, "text_encoder_2"):
            pooled = torch.cat([emb[3], emb[2]])
            time_ids = torch.tensor([[spec["size"], spec["size"], 0, 0, spec["size"], spec["size"]]] * 2,
                                    device=device, dtype=cond.dtype)
            kwargs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids}
        with FlopCounterMode(display=False) as fc:
            pipe.unet(latents, torch.tensor(500, device=device), encoder_hidden_states=cond, **kwargs)
        out["denoiser_step"] = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            pipe.vae.decode(latents[:1].to(pipe.vae.dtype))
        out["vae"] = fc.get_total_flops()
    out["per_image"] = out["denoiser_step"] * spec["steps"] + out["text"] + out["vae"]
    return out


def time_generate(pipe, spec: dict, batch: int, device) -> float:
    """Seconds of one pipeline call for ``batch`` images (after a warm-up call that also compiles)."""
    import torch

    kwargs = dict(height=spec["size"], width=spec["size"], guidance_scale=spec["guidance"], output_type="np")
    prompts = [f"a photo of a crowd in a street, scene {i}" for i in range(batch)]
    with torch.inference_mode():
        pipe(prompt=prompts, num_inference_steps=2, **kwargs)
        _sync(device)
        t0 = time.perf_counter()
        pipe(prompt=prompts, num_inference_steps=spec["steps"],
             generator=[torch.Generator("cpu").manual_seed(i) for i in range(batch)], **kwargs)
        _sync(device)
    return time.perf_counter() - t0


# -- annotation -------------------------------------------------------------------------------------------------
def bench_annotate(device, dtype, *, toy: bool, tmp: Path, echo) -> list[dict]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from promptmix.annotation.annotate.runner import annotate_run
    from promptmix.models.counting import CounterConfig, build_counter, save_counter
    from promptmix.testing._annotators import write_generated_run
    from promptmix.testing.synthetic import smooth_noise_images

    width, height = (256, 192) if toy else (1024, 768)
    n, batch = (8, 4) if toy else (64, 8)
    run = write_generated_run(tmp / "annotate-run", smooth_noise_images(n, width, height), task="counting",
                              chunk_size=batch * 4)
    rows = []
    for arch in COUNTERS:
        config = CounterConfig.default(arch, width_div=16 if toy else 1)
        torch.manual_seed(0)
        model = build_counter(config)
        folder = save_counter(model, config, tmp / f"counter-{arch}")
        model = model.to(device=device, dtype=dtype).eval()
        x = torch.randn(batch, 3, height, width, device=device, dtype=dtype)
        with torch.inference_mode():
            with FlopCounterMode(display=False) as fc:
                model(x[:1])
            flops = fc.get_total_flops()
            model(x)  # warm-up
            _sync(device)
            t0 = time.perf_counter()
            reps = 2 if toy else 4
            for _ in range(reps):
                model(x)
            _sync(device)
            model_ips = reps * batch / (time.perf_counter() - t0)
        del model
        annotate_run(run, [str(folder)], batch_size=batch, device=str(device), dtype=str(dtype).replace("torch.", ""))
        import shutil

        shutil.rmtree(run / "annotations", ignore_errors=True)  # the timed run starts from nothing
        _sync(device)
        t0 = time.perf_counter()
        annotate_run(run, [str(folder)], batch_size=batch, device=str(device), dtype=str(dtype).replace("torch.", ""))
        _sync(device)
        e2e_ips = n / (time.perf_counter() - t0)
        shutil.rmtree(run / "annotations", ignore_errors=True)
        rows.append({"arch": arch, "flops": flops, "model_ips": model_ips, "e2e_ips": e2e_ips,
                     "size": f"{width}x{height}", "batch": batch, "images": n})
        echo(f"annotate {arch} ({'toy, width/16' if toy else 'full width'}) {width}x{height}: "
             f"{_flops(flops)}/image; forward alone {model_ips:.2f} images/s, annotate_run {e2e_ips:.2f} "
             f"images/s -> {'GPU' if device.type == 'cuda' else 'device'} busy {100 * e2e_ips / model_ips:.0f}%")
    return rows


# -- the run ----------------------------------------------------------------------------------------------------
ALL = "all (channels_last+fuse_qkv+compile)"


def plan(toy: bool) -> list[tuple[str, int]]:
    """(option, batch) of one model in priority order: what matters most is measured first, within the budget.

    Compiling cannot be undone, so the compiled measurements come last; the other options are set and
    reset around the compiled denoiser as on a plain one (dynamo recompiles when they change it).
    """
    batches = (1, 2) if toy else (1, 8, 16)
    order = [("plain", b) for b in batches]
    for option in ("eager attention", "bf16", "channels_last", "fuse_qkv"):
        order += [(option, b) for b in (reversed(batches) if not toy else batches[-1:])]
    if not toy:  # each change of the compiled module recompiles it: one option at a time
        order += [(ALL, b) for b in reversed(batches)] + [("compile", b) for b in reversed(batches)]
    return order


def measure(*, toy: bool | None = None, budget_s: float = 450.0, peak: float | None = None,
            compile_mode: str = "default", echo=print) -> dict:
    """Every measurement of the module docstring that fits in ``budget_s``; returns rows and header facts."""
    os.environ.setdefault("PROMPTMIX_NO_PROGRESS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from promptmix.generation.generate import speed
    from promptmix.utils.verbosity import quiet_imported_libraries

    quiet_imported_libraries()
    t_start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    toy = device.type != "cuda" if toy is None else toy
    half = torch.float16 if device.type == "cuda" else torch.float32  # CPUs have no fast float16
    bf16 = torch.bfloat16
    peak_value, peak_source = peak_tflops(device, peak)
    practical = matmul_tflops(device, half)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    echo(f"device: {name} ({'toy sizes' if toy else 'full size'}); peak {peak_value or '-'} TFLOP/s "
         f"({peak_source}); a {8192 if device.type == 'cuda' else 1024}^3 matmul reaches {practical:.3g} TFLOP/s "
         f"in {str(half).replace('torch.', '')} (the bound uses {'the datasheet peak' if peak_value else 'this'})")
    bound_tflops = peak_value or practical
    specs = {"sd15": TOY_SD15 if toy else SD15, "sdxl": TOY_SDXL if toy else SDXL}
    titles = {"sd15": "SD 1.5", "sdxl": "SDXL"}
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        deadlines = {"sd15": t_start + 0.45 * budget_s, "sdxl": t_start + 0.9 * budget_s}
        for model in ("sd15", "sdxl"):
            todo = plan(toy)
            if time.perf_counter() > deadlines[model]:
                skipped += [(model, o, b) for o, b in todo]
                continue
            spec = specs[model]
            pipe = build_pipeline(spec, device, half, tmp / model)
            flops = count_flops(pipe, spec)
            bound = bound_tflops * 1e12 / flops["per_image"]
            echo(f"{titles[model]} {spec['size']}x{spec['size']}, {spec['steps']} steps, guidance {spec['guidance']}: "
                 f"{_flops(flops['per_image'])}/image (denoiser {_flops(flops['denoiser_step'])} x {spec['steps']}, "
                 f"text encoders {_flops(flops['text'])}, VAE decode {_flops(flops['vae'])}) -> compute bound "
                 f"{bound:.3g} images/s at {bound_tflops:.3g} TFLOP/s")
            compiled = False
            current = None
            for option, batch in todo:
                if time.perf_counter() > deadlines[model]:
                    skipped.append((model, option, batch))
                    continue
                if option != current:
                    _reset(pipe, bf16 if option == "bf16" else half)
                    settings = {k: (compile_mode if k == "compile" else v) for k, v in OPTIONS[option].items()}
                    if compiled:
                        settings.pop("compile", None)  # already compiled in place
                    elif "compile" in settings:
                        compiled = True
                    speed.apply(pipe, pipe.unet, speed.SpeedConfig(**settings), device=device)
                    current = option
                seconds = time_generate(pipe, spec, batch, device)
                ips = batch / seconds
                label = f"plain ({'fp16' if half == torch.float16 else 'fp32'}, sdpa)" if option == "plain" else option
                row = {"model": model, "option": label, "batch": batch, "ips": ips, "bound": bound,
                       "tflops": ips * flops["per_image"] / 1e12, "spec": spec}
                rows.append(row)
                echo(f"  {titles[model]:6} batch {batch:>2}  {row['option']:38} {ips:8.3f} images/s  "
                     f"{100 * ips / bound:5.1f}% of the bound  ({row['tflops']:.3g} TFLOP/s)")
            del pipe
            if device.type == "cuda":
                torch.cuda.empty_cache()
        annotate = []
        if time.perf_counter() - t_start <= budget_s + 60:
            annotate = bench_annotate(device, half, toy=toy, tmp=tmp, echo=echo)
            for a in annotate:
                a["bound"] = bound_tflops * 1e12 / a["flops"]
                echo(f"  annotate {a['arch']}: {a['e2e_ips']:.2f} images/s, compute bound {a['bound']:.3g} images/s "
                     f"({100 * a['e2e_ips'] / a['bound']:.1f}%)")
        else:
            skipped += [("annotate", arch, 0) for arch in COUNTERS]
    for model, option, batch in skipped:
        echo(f"  skipped (time budget {budget_s:.0f} s): {model} {option} batch {batch}")
    echo(f"total {time.perf_counter() - t_start:.0f} s")
    return {"device": name, "toy": toy, "rows": rows, "annotate": annotate, "skipped": skipped,
            "peak_tflops": peak_value, "matmul_tflops": practical}


def run(quick: bool = False) -> list[dict]:
    """Rows for ``scripts/bench.py``: images/s of each measurement against its compute bound."""
    import io

    buf = io.StringIO()
    m = measure(toy=None if not quick else True, echo=lambda line: print(line, file=buf))
    out = bench_rows(m)
    if out:
        out[0]["output"] = buf.getvalue()
    return out


def bench_rows(m: dict) -> list[dict]:
    """``scripts/bench.py`` rows of a :func:`measure` result (ours: images/s; baseline: the compute bound)."""
    gpu = not m["toy"]
    out = []
    for r in m["rows"]:
        name = (f"generate {r['model']} {r['spec']['size']}^2 {r['spec']['steps']} steps b{r['batch']} {r['option']}"
                + ("" if gpu else " (toy, CPU)"))
        row = {"name": name, "ours": r["ips"], "baseline": r["bound"], "unit": "images/s", "ratio": r["ips"] / r["bound"],
               "goal": "compute bound"}
        if gpu and r["model"] == "sd15" and r["batch"] == 16 and r["option"].startswith("all"):
            row.update(goal=">= 0.4 of the compute bound", ok=r["ips"] / r["bound"] >= 0.4)
        out.append(row)
    for a in m["annotate"]:
        busy = a["e2e_ips"] / a["model_ips"]
        out.append({"name": f"annotate {a['arch']} {a['size']}{'' if gpu else ' (toy, CPU)'}: "
                            f"{'GPU' if gpu else 'device'} busy",
                    "ours": 100 * busy, "baseline": None, "unit": "%", "ratio": None,
                    "goal": ">= 80%" if gpu else "(on a GPU: >= 80%)", **({"ok": busy >= 0.8} if gpu else {})})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--toy", action="store_true", help="toy sizes even on a GPU")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="stop starting new measurements after this many seconds (default: 450)")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak dense bf16/fp16 TFLOP/s")
    parser.add_argument("--compile-mode", default="default",
                        help="torch.compile mode of the compiled measurements (default: default; max-autotune "
                             "tunes for minutes, so raise --budget-s with it)")
    args = parser.parse_args(argv)
    measure(toy=True if args.toy else None, budget_s=args.budget_s, peak=args.peak_tflops,
            compile_mode=args.compile_mode)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
