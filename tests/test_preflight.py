"""Pre-flight checks: every bad input is named, with its fix, before any model runs."""

from __future__ import annotations

import os

import pytest
import torch

from promptmix import preflight
from promptmix.annotation.annotators.registry import build_annotator
from promptmix.errors import CheckpointError
from promptmix.models import checkpoints
from promptmix.models.counting import CounterConfig, build_counter
from promptmix.preflight import Problem
from promptmix.testing import _annotators as tiny

LFS_POINTER = (b"version https://git-lfs.github.com/spec/v1\n"
               b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
               b"size 155035389\n")


@pytest.fixture()
def bad_files(tmp_path):
    files = {"lfs": tmp_path / "SASNet_SHHB.pth", "html": tmp_path / "model_qnrf.pth", "junk": tmp_path / "junk.pth",
             "empty": tmp_path / "empty.pth", "missing": tmp_path / "missing.pth"}
    files["lfs"].write_bytes(LFS_POINTER)
    files["html"].write_bytes(b"\n  <!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>")
    files["junk"].write_bytes(b"not weights!!")  # 13 bytes
    files["empty"].write_bytes(b"")
    return files


def _one(problems: list[Problem]) -> str:
    assert len(problems) == 1, problems
    return str(problems[0])


def test_files_that_are_not_weights_are_named_with_the_fix(bad_files):
    msg = _one(preflight.check_checkpoint(bad_files["lfs"], "sasnet"))
    assert "Git LFS pointer" in msg and "git lfs pull" in msg and "155035389 bytes" in msg
    msg = _one(preflight.check_checkpoint(bad_files["html"], "dmcount"))
    assert "HTML page" in msg and "download" in msg.lower()
    assert "neither a safetensors file nor a PyTorch checkpoint (.pth / .pth.tar): 13 bytes" in _one(
        preflight.check_checkpoint(bad_files["junk"], "csrnet"))
    assert "empty (0 bytes)" in _one(preflight.check_checkpoint(bad_files["empty"], "csrnet"))
    assert "does not exist" in _one(preflight.check_checkpoint(bad_files["missing"], "csrnet"))
    assert "unknown architecture 'vgg'" in _one(preflight.check_checkpoint(bad_files["junk"], "vgg"))


def test_loaders_say_lfs_pointer_not_header_too_large(bad_files):
    for loader in (checkpoints.read_state_dict, lambda p: build_annotator(f"sasnet={p}").load()):
        with pytest.raises(CheckpointError, match="Git LFS pointer") as exc:
            loader(bad_files["lfs"])
        assert "header too large" not in str(exc.value) and "git lfs pull" in str(exc.value)
    with pytest.raises(CheckpointError, match="HTML page"):
        checkpoints.read_state_dict(bad_files["html"])
    # the trainer's --weights and a model folder whose weights are a pointer
    from promptmix.training.train.trainer import load_weights

    ptr = bad_files["lfs"].with_name("model.safetensors")
    ptr.write_bytes(LFS_POINTER)
    with pytest.raises(CheckpointError, match="Git LFS pointer"):
        load_weights(torch.nn.Linear(1, 1), ptr)


def test_truncated_checkpoints_are_named(tmp_path):
    folder = tiny.save_tiny_counter(tmp_path / "m", "csrnet")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    msg = _one(preflight.check_counter_folder(folder))
    assert "truncated safetensors file" in msg
    with pytest.raises(CheckpointError, match="truncated"):
        checkpoints.read_state_dict(weights)
    pth = tmp_path / "PartAmodel_best.pth.tar"
    torch.save({"state_dict": build_counter(CounterConfig.default("csrnet", width_div=16)).state_dict()}, pth)
    pth.write_bytes(pth.read_bytes()[:-200])
    assert "truncated or corrupt" in _one(preflight.check_checkpoint(pth, "csrnet", width_div=16))


def test_keys_are_checked_against_the_declared_architecture(tmp_path, monkeypatch):
    torch.manual_seed(0)
    dm = build_counter(CounterConfig.default("dmcount"))  # full width, as released
    good = tmp_path / "model_qnrf.pth"
    torch.save({f"module.{k}": v for k, v in dm.state_dict().items()}, good)
    # the check reads keys and shapes only: no network is built on a real device
    import promptmix.models.counting as counting

    real_build = counting.build_counter
    monkeypatch.setattr(counting, "build_counter", lambda *a, **k: pytest.fail("built a model"))
    assert preflight.check_checkpoint(good, "dmcount") == []
    assert preflight.check_annotator(f"qnrf:dmcount={good}") == []
    msg = _one(preflight.check_checkpoint(good, "csrnet"))
    assert "do not fit the csrnet architecture" in msg and "Missing keys (34)" in msg
    monkeypatch.setattr(counting, "build_counter", real_build)
    # a wrong width is a shape mismatch
    folder = tiny.save_tiny_counter(tmp_path / "tiny", "sasnet")
    assert preflight.check_counter_folder(folder) == []
    msg = _one(preflight.check_checkpoint(folder / "model.safetensors", "sasnet", width_div=8))
    assert "Shape mismatches" in msg


def test_every_annotator_problem_at_once(tmp_path, bad_files):
    good = tiny.save_tiny_counter(tmp_path / "good", "csrnet")
    lfs_folder = tiny.save_tiny_counter(tmp_path / "lfs-folder", "dmcount")
    (lfs_folder / "model.safetensors").write_bytes(LFS_POINTER)
    specs = [str(good), f"a:sasnet={bad_files['lfs']}", f"b:csrnet={bad_files['junk']}",
             f"c:dmcount={bad_files['missing']}", str(lfs_folder), "vgg=weights.pth"]
    problems = [p for i, s in enumerate(specs) for p in preflight.check_annotator(s, subject=f"annotate.annotators[{i}]")]
    assert [p.subject for p in problems] == [f"annotate.annotators[{i}]" for i in (1, 2, 3, 4, 5)]
    text = preflight.report(problems)
    assert text.startswith("5 problem(s)") and "Git LFS pointer" in text and "unknown kind 'vgg'" in text


def test_model_ids_local_cached_offline_and_online(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    assert preflight.hub_offline()  # tests run with HF_HUB_OFFLINE=1
    folder = tiny.save_tiny_depth(tmp_path / "depth")
    assert preflight.check_model_id(folder) == []
    (folder / "model.safetensors").write_bytes(LFS_POINTER)
    assert "Git LFS pointer" in _one(preflight.check_model_id(folder))
    msg = _one(preflight.check_model_id("someone/not-downloaded", what="diffusion model"))
    assert "HF_HUB_OFFLINE=1" in msg and "nor in the local Hub cache" in msg and "hf download" in msg
    assert "does not exist" in _one(preflight.check_model_id("./no/such/folder"))
    # a repo in the local Hub cache (the layout huggingface_hub writes) passes offline
    repo = os.path.join(hc.HF_HUB_CACHE, "models--someone--cached-model")
    sha = "0123456789abcdef0123456789abcdef01234567"
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    os.makedirs(os.path.join(repo, "snapshots", sha), exist_ok=True)
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(sha)
    with open(os.path.join(repo, "snapshots", sha, "config.json"), "w") as f:
        f.write("{}")
    assert preflight.check_model_id("someone/cached-model") == []
    # online: the Hub's answer decides
    import huggingface_hub

    monkeypatch.setattr(preflight, "hub_offline", lambda: False)
    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", lambda self, *a, **k: object())
    assert preflight.check_model_id("someone/on-the-hub") == []

    def down(self, *a, **k):
        raise ConnectionError("no route to host")
    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", down)
    msg = _one(preflight.check_model_id("someone/on-the-hub"))
    assert "the Hugging Face Hub could not be reached: ConnectionError: no route to host" in msg
    assert "`hf download someone/on-the-hub`" in msg  # with the same ways out as model loading


def test_expected_fake_rows_cover_each_training_run(tmp_path):
    from promptmix.annotation.filter.filtering import keep_count
    from promptmix.training.train.config import TrainConfig

    generated = preflight.expected_generated_rows(37, 10)
    assert generated == 370
    assert preflight.expected_kept_rows(generated, 100, num_annotators=1) == 370
    assert preflight.expected_kept_rows(generated, 33, num_annotators=2) == keep_count(370, 33) == 122
    assert preflight.expected_generated_rows(0, 1, mvc_images_per_class=50, num_classes=3) == 150

    def cfg(**kw):
        return TrainConfig(task="counting", real="r", fake="f", output_dir=str(tmp_path / "o"), **kw)
    runs = {"baseline": TrainConfig(task="counting", real="r", output_dir=str(tmp_path / "b")),
            "promptmix": cfg(mixing="promptmix", r_mix=500), "small": cfg(mixing="promptmix", r_mix=100),
            "all": cfg(mixing="promptmix", r_mix=300, fake_config="all"), "interleave": cfg(mixing="interleave")}
    problems = preflight.check_fake_rows(122, runs, all_rows=370, detail="37 prompts x 10 images, keep 33 %")
    assert [p.subject for p in problems] == ["train.promptmix.r_mix"]
    assert "r_mix 500" in problems[0].message and "about 122 rows" in problems[0].message
    assert [p.subject for p in preflight.check_fake_rows(0, runs)] == [
        "train.promptmix.r_mix", "train.small.r_mix", "train.all.r_mix", "train.interleave.mixing"]


def test_crop_sizes_fit_the_smallest_image(tmp_path):
    from promptmix.testing.synthetic import write_real_dataset

    real = write_real_dataset(tmp_path / "real", "counting", size=(48, 64))
    smallest = preflight.smallest_image_size(real)
    assert smallest == (48, 64)
    msg = _one(preflight.check_crop_size(64, smallest, subject="train.x.crop_size"))
    assert msg.startswith("train.x.crop_size") and "48x64" in msg and "crop_size <= 48" in msg
    assert preflight.check_crop_size(48, smallest) == [] and preflight.check_crop_size(None, smallest) == []
    assert preflight.check_crop_size(40, smallest, image_size=32) != []


def test_output_folders_writable(tmp_path):
    target = tmp_path / "runs" / "new" / "train"
    assert preflight.check_writable([target]) == [] and not (tmp_path / "runs").exists()  # nothing created
    (tmp_path / "afile").write_text("x")
    msg = _one(preflight.check_writable([tmp_path / "afile" / "out"]))
    assert "is a file" in msg
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            assert "cannot write" in _one(preflight.check_writable([ro / "out"]))
        finally:
            ro.chmod(0o755)


def test_a_pipeline_config_gets_every_problem_at_once(tmp_path, tiny_models, bad_files):
    from promptmix.pipeline.config import PipelineConfig
    from promptmix.testing.raw_datasets import write_shanghaitech_raw

    raw = write_shanghaitech_raw(tmp_path / "raw", part="B", n_train=2, n_test=1, size=(48, 32), seed=1)
    train = {"model": "rescsrnet", "width_div": 16, "epochs": 1}
    cfg = PipelineConfig.from_dict({
        "run_dir": str(tmp_path / "run"),
        "real": {"builder": "shanghaitech", "root": str(raw), "part": "B"},
        "caption": {"model": "Salesforce/blip-image-captioning-large"},  # never put in the test cache
        "generate": {"model": str(tiny_models["sd"]), "images_per_prompt": 10},
        "annotate": {"annotators": [f"shtb:sasnet={bad_files['lfs']}", f"a:{tiny_models['counter_a']}"]},
        "filter": {"keep_percent": 50, "target": "a"},
        "train": {"baseline": {**train, "mixing": "none"},
                  "promptmix": {**train, "mixing": "promptmix", "r_mix": 500},
                  "pretrained": {**train, "mixing": "none", "pretrained": "imagenet"}},
    })
    problems = preflight.check_pipeline(cfg, num_prompts=30)
    assert [p.subject for p in problems] == ["caption.model", "annotate.annotators[0]", "train.pretrained.pretrained",
                                             "train.promptmix.r_mix"]
    text = preflight.report(problems)
    assert "HF_HUB_OFFLINE=1" in text and "Git LFS pointer" in text and "about 150 rows" in text
    assert "timm/resnet18.tv_in1k" in text
    assert [p.subject for p in preflight.check_pipeline(cfg, num_prompts=100)] == [
        "caption.model", "annotate.annotators[0]", "train.pretrained.pretrained"]


def test_run_check_on_the_shtb_config_with_an_lfs_pointer_stops_before_anything_runs(tmp_path, capsys, monkeypatch):
    """`promptmix run configs/promptmix_shtb.yaml --check` with the official repository's LFS pointer."""
    import shutil
    from pathlib import Path

    import yaml

    from promptmix.cli import main

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "SASNet_SHHB.pth").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:" + "4d" * 32 + "\nsize 155035389\n")
    (tmp_path / "data" / "ShanghaiTech" / "part_B").mkdir(parents=True)
    config = yaml.safe_load((root / "configs" / "promptmix_shtb.yaml").read_text())
    shutil.copy(root / "configs" / "promptmix_shtb.yaml", tmp_path / "shtb.yaml")
    assert main(["run", str(tmp_path / "shtb.yaml"), "--check"]) == 1
    err = capsys.readouterr().err
    assert "Git LFS pointer" in err and "git lfs pull" in err and "problem(s) found before running" in err
    assert not Path(config["run_dir"]).exists()  # nothing ran, nothing was written
