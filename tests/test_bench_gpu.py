"""``scripts/bench_gpu.py`` runs at toy size on CPU: every measurement, its FLOPs and its compute bound."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("promptmix_bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_flop_count_matches_an_independent_count(bench):
    """FlopCounterMode (what the bounds use) equals 2 x the conv MACs of promptmix.models.info for CSRNet."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from promptmix.models.counting import CounterConfig, build_counter
    from promptmix.models.info import count_macs

    model = build_counter(CounterConfig.default("csrnet", width_div=16)).eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(torch.randn(1, 3, 96, 128))
    macs, _ = count_macs(model, 96, 128)
    assert abs(fc.get_total_flops() - 2 * macs) <= 0.01 * 2 * macs


def test_published_configs_are_the_real_models(bench):
    """Parameter counts of the full-size denoisers built from the configs (meta device: no memory)."""
    import torch
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        sd = sum(p.numel() for p in UNet2DConditionModel(**bench.SD15["unet"]).parameters())
        xl = sum(p.numel() for p in UNet2DConditionModel(**bench.SDXL["unet"]).parameters())
    assert 859e6 < sd < 860e6  # SD 1.5 U-Net: 859.5 M
    assert 2.56e9 < xl < 2.57e9  # SDXL base U-Net: 2.567 B


def test_runs_at_toy_size_on_cpu(bench):
    lines = []
    m = bench.measure(toy=True, echo=lines.append)
    text = "\n".join(lines)
    assert m["toy"] and not m["skipped"]
    planned = {(model, "plain (fp32, sdpa)" if o == "plain" else o, b) for model in ("sd15", "sdxl")
               for o, b in bench.plan(True)}
    assert {(r["model"], r["option"], r["batch"]) for r in m["rows"]} == planned
    for r in m["rows"]:
        assert r["ips"] > 0 and 0 < r["ips"] < r["bound"], r  # below the compute bound, as physics wants
    assert {a["arch"] for a in m["annotate"]} == {"csrnet", "sasnet"}
    for a in m["annotate"]:
        assert 0 < a["e2e_ips"] < a["bound"] and a["model_ips"] > 0
    assert "compute bound" in text and "% of the bound" in text and "device busy" in text
    rows = bench.bench_rows(m)  # what scripts/bench.py prints
    assert len(rows) == len(m["rows"]) + 2
    assert all(r["unit"] == "images/s" and r["ratio"] == r["ours"] / r["baseline"] for r in rows[:-2])
    assert [r["unit"] for r in rows[-2:]] == ["%", "%"] and all("ok" not in r for r in rows)  # no GPU goal on a CPU
