"""The speed options of ``promptmix generate`` give the plain path's images within the tolerances that
``generation/generate/speed.py`` states (CPU, tiny random models; the speed itself is bench_gpu.py's job)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

TOL = 1e-4  # same math, other kernels or layouts: rounding only


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from promptmix.testing import save_tiny_models

    return save_tiny_models(tmp_path_factory.mktemp("speed-models"), keys=("sd", "sdxl", "flux", "sana"))


def _rows(n: int, w: int = 32, h: int = 32):
    from promptmix.generation.generate.plan import PlannedRow

    return [PlannedRow(position=i, row_id=f"r{i}", prompt=f"a cat on the street, number {i}", prompt_id=f"p{i}",
                       image_index=0, source_image_id=None, label=None, seed=1000 + i, width=w, height=h, gen_width=w,
                       gen_height=h, jpeg_quality=90, grayscale=False) for i in range(n)]


SPEED_KEYS = ("attention", "compile", "channels_last", "fuse_qkv", "vae_tiling", "cpu_offload")


def _generator(model, dtype=torch.float32, **kw):
    from promptmix.generation.generate.config import GenerateConfig
    from promptmix.generation.generate.runner import Generator
    from promptmix.generation.generate.speed import SpeedConfig
    from promptmix.utils.model_source import resolve_model

    speed = {k: kw.pop(k) for k in SPEED_KEYS if k in kw}  # generate.speed.*
    config = GenerateConfig(prompts="p.txt", model=str(model), device="cpu", steps=2, speed=SpeedConfig(**speed), **kw)
    return Generator(config, resolve_model(str(model), None, what="diffusion model"), device=torch.device("cpu"),
                     dtype=dtype)


def _images(model, n=2, w=32, h=32, dtype=torch.float32, **kw):
    return _generator(model, dtype, **kw)(_rows(n, w, h))[0]


@pytest.mark.parametrize("key", ["sd", "sdxl", "flux", "sana"])
def test_half_precision_is_within_tolerance(models, key):
    ref = _images(models[key])
    fp16 = _images(models[key], dtype=torch.float16)
    bf16 = _images(models[key], dtype=torch.bfloat16)
    # measured over sd, sdxl, flux, sana: float16 max 0.026 / mean 0.0006, bfloat16 max 0.125 / mean 0.005
    assert np.abs(fp16 - ref).max() <= 0.05 and np.abs(fp16 - ref).mean() <= 0.002
    assert np.abs(bf16 - ref).max() <= 0.2 and np.abs(bf16 - ref).mean() <= 0.01


def test_sdxl_vae_decodes_in_float32_in_a_float16_run(models):
    decoded = {}
    for key in ("sd", "sdxl"):
        gen = _generator(models[key], torch.float16)
        gen.pipe.vae.decoder.register_forward_pre_hook(
            lambda module, args, key=key: decoded.__setitem__(key, (args[0].dtype, next(module.parameters()).dtype)))
        gen(_rows(1))
    assert decoded["sdxl"] == (torch.float32, torch.float32)  # the VAE config's force_upcast, as SDXL needs
    assert decoded["sd"] == (torch.float16, torch.float16)


@pytest.mark.parametrize("key,option", [
    ("sd", dict(attention="eager")), ("flux", dict(attention="eager")), ("sdxl", dict(attention="eager")),
    ("sd", dict(channels_last=True)), ("sdxl", dict(channels_last=True)), ("sana", dict(channels_last=True)),
    ("sd", dict(fuse_qkv=True)), ("sdxl", dict(fuse_qkv=True)), ("flux", dict(fuse_qkv=True)),
    ("sd", dict(channels_last=True, fuse_qkv=True)),
])
def test_speed_option_gives_the_plain_images(models, key, option):
    ref = _images(models[key])
    gen = _generator(models[key], **option)
    out = gen(_rows(2))[0]
    assert np.abs(out - ref).max() <= TOL
    for name, value in option.items():
        assert gen.speed[name] == value or str(gen.speed[name]).startswith(str(value))
    processors = {type(p).__name__ for p in gen.denoiser.attn_processors.values()}
    if option.get("fuse_qkv") and key != "flux":
        assert processors == {"FusedAttnProcessor2_0"}  # the projections really are fused
    if option.get("attention") == "eager" and key != "flux":
        assert processors == {"AttnProcessor"}
    if key == "flux" and option.get("attention") == "eager":
        assert {str(p._attention_backend) for p in gen.denoiser.attn_processors.values()} == {
            "AttentionBackendName._NATIVE_MATH"}


def test_vae_tiling_is_close(models):
    ref = _images(models["sd"], n=1, w=160, h=160)
    tiled = _images(models["sd"], n=1, w=160, h=160, vae_tiling=True)  # tiles of 64 px for this VAE
    psnr = 10 * np.log10(1.0 / float(((ref - tiled) ** 2).mean()))
    assert 20 <= psnr < 100  # seams blend (measured 23.5 dB on this random VAE); not bit-identical


def test_batch_size_auto_halves_on_out_of_memory(models, monkeypatch):
    from promptmix.errors import ConfigError
    from promptmix.generation.generate.runner import Generator

    fixed = _images(models["sd"], n=6, batch_size=1)
    real = Generator._generate
    calls = []

    def small_memory(self, rows, **kw):  # a device that holds two images at a time
        calls.append(len(rows))
        if len(rows) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, rows, **kw)

    monkeypatch.setattr(Generator, "_generate", small_memory)
    gen = _generator(models["sd"], batch_size="auto")
    out = gen(_rows(6))[0]
    assert calls[:3] == [6, 3, 1] and out.shape[0] == 6
    assert np.abs(out - fixed).max() <= TOL
    calls.clear()
    gen(_rows(6))  # the size that fitted is remembered for this generation size
    assert calls == [1] * 6
    with pytest.raises(ConfigError, match=r"batch_size: 6 image\(s\) of 32x32 do not fit.*batch_size: auto"):
        _generator(models["sd"], batch_size=6)(_rows(6))


def test_bad_speed_settings_are_refused(models):
    from promptmix.errors import ConfigError

    for key, option, message in [
        ("sd", dict(attention="flash"), r"call torch SDPA directly"),
        ("sd", dict(attention="nonsense"), r"expected sdpa, eager or a diffusers attention backend"),
        ("flux", dict(attention="flash_hub"), r"expected sdpa, eager"),  # would download kernels
        ("sana", dict(fuse_qkv=True), r"do not use fused projections"),
        ("sd", dict(fuse_qkv=True, attention="eager"), r"use attention: sdpa"),
        ("sd", dict(cpu_offload="model"), r"speed\.cpu_offload.*CUDA GPU"),
    ]:
        with pytest.raises(ConfigError, match=message):
            _generator(models[key], **option)
    with pytest.raises(ConfigError, match=r"generate\.speed\.compile: expected one of 'off', 'default'"):
        _generator(models["sd"], compile="fast")
    with pytest.raises(ConfigError, match="batch_size"):
        _generator(models["sd"], batch_size="many")


@pytest.mark.slow
def test_compiled_denoiser_gives_the_plain_images(models):
    ref = _images(models["sd"])
    gen = _generator(models["sd"], compile="default")
    assert gen.speed["compile"] == "default"
    out = gen(_rows(2))[0]  # compiles (inductor, about a minute on one CPU core), then runs
    assert np.abs(out - ref).max() <= TOL
    assert np.abs(gen(_rows(2))[0] - ref).max() <= TOL  # the compiled graph again


def test_command_line_flags_set_the_speed_options(tmp_path):
    from promptmix.cli import build_parser, load_command

    parser = build_parser("generate")
    command = load_command("generate")
    args = parser.parse_args(["generate", "--prompts", "p.txt", "--model", "m", "--out", str(tmp_path),
                              "--compile", "max-autotune", "--fuse-qkv", "--channels-last", "--attention", "eager",
                              "--batch-size", "auto", "--max-sequence-length", "300"])
    config = command.config(args)
    speed = config.speed
    assert (speed.compile, speed.fuse_qkv, speed.channels_last, speed.attention, speed.vae_tiling) == (
        "max-autotune", True, True, "eager", False)
    assert config.batch_size == "auto" and config.max_sequence_length == 300
    args = parser.parse_args(["generate", "--prompts", "p.txt", "--model", "m", "--out", str(tmp_path),
                              "--batch-size", "4", "--max-sequence-length", "300"])
    plain = command.config(args)
    assert plain.batch_size == 4 and plain.speed.plain
    assert plain.config_hash() == config.config_hash()  # speed options and batch size are run-time settings
