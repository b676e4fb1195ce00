"""Annotators with tiny models: the three tasks, SPEC parsing, and checkpoints in the authors' layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from promptmix.annotation.annotators.registry import build_annotator, default_name, detect_kind, parse_spec
from promptmix.models import checkpoints, counting
from promptmix.models.csrnet import CSRNet
from promptmix.models.dmcount import DMCount
from promptmix.models.sasnet import SASNet
from promptmix.errors import CheckpointError, ConfigError, InputError
from promptmix.testing import _annotators as tiny
from promptmix.utils.io import sha256_file

CLASSES = ["cat", "dog", "bird"]


class Smuggled:
    """A pickled object that is not plain data: weights-only loading must refuse it."""

    def __init__(self):
        self.payload = torch.zeros(1)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from promptmix.testing import save_tiny_models

    root = tmp_path_factory.mktemp("annotator-models")
    out = save_tiny_models(root, keys=("counter_a", "counter_b", "depth", "classifier"), class_names=CLASSES)
    out["sasnet"] = tiny.save_tiny_counter(root / "sasnet", arch="sasnet", seed=2)
    out["clip"] = tiny.save_tiny_clip(root / "clip")
    return out


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    sizes = [(48, 32), (64, 64), (48, 32)]  # (w, h): two sizes, grouped in batches
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


# -- counting ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, stride", [("counter_a", 8), ("counter_b", 8), ("sasnet", 1)])
def test_counters_give_maps_at_their_stride_and_counts_are_sums(models, images, key, stride):
    ann = build_annotator(str(models[key]), batch_size=2)
    assert ann.task == "counting" and ann.output_stride == stride
    with ann:
        out = ann.annotate(images)
    for im, o in zip(images, out):
        assert o["density"].dtype == np.float16
        assert o["density"].shape == (im.height // stride, im.width // stride)
        assert o["ok"] is True
        assert o["count"] == pytest.approx(float(o["density"].astype(np.float32).sum()), rel=2e-3)
    # batching by size gives what one-by-one gives, in input order
    ann1 = build_annotator(str(models[key]), batch_size=1)
    with ann1:
        single = ann1.annotate([images[1]])[0]
    assert single["count"] == pytest.approx(out[1]["count"], rel=1e-4)
    assert out[0]["count"] != pytest.approx(out[1]["count"], rel=1e-3)  # the random net depends on the image


def test_counter_folders_and_names(models):
    assert detect_kind(models["counter_a"]) == "csrnet"
    assert detect_kind(models["counter_b"]) == "dmcount"
    assert detect_kind(models["depth"]) == "transformers-depth"
    assert detect_kind(models["classifier"]) == "transformers-classification"
    assert detect_kind(models["clip"]) == "clip-zeroshot"
    assert default_name(parse_spec(str(models["counter_a"]))) == "counter_a"
    p = parse_spec("shtb:sasnet=/ckpt/SHHB.pth")
    assert (p.name, p.kind, p.target) == ("shtb", "sasnet", "/ckpt/SHHB.pth")
    assert default_name(parse_spec("dmcount=model_qnrf.pth")) == "dmcount"
    assert default_name(parse_spec("clip-zeroshot=openai/clip-vit-base-patch32")) == "zeroshot-clip-vit-base-patch32"
    with pytest.raises(InputError, match="unknown kind 'vgg'.*csrnet"):
        parse_spec("vgg=weights.pth")
    with pytest.raises(InputError, match="ARCH=FILE"):
        detect_kind(models["counter_a"] / "model.safetensors")


def test_author_layout_keys_match_the_released_models():
    with torch.device("meta"):
        csr, dm, sas = CSRNet(), DMCount(), SASNet()
    k = {n: tuple(t.shape) for n, t in csr.state_dict().items()}
    assert [n for n in k if n.startswith("frontend.") and n.endswith(".weight")] == [
        f"frontend.{i}.weight" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21)]
    assert [n for n in k if n.startswith("backend.") and n.endswith(".weight")] == [
        f"backend.{i}.weight" for i in (0, 2, 4, 6, 8, 10)]
    assert k["backend.0.weight"] == (512, 512, 3, 3) and k["output_layer.weight"] == (1, 64, 1, 1)
    assert csr.backend[0].dilation == (2, 2)
    k = {n: tuple(t.shape) for n, t in dm.state_dict().items()}
    assert k["features.34.weight"] == (512, 512, 3, 3) and "features.36.weight" not in k
    assert k["reg_layer.0.weight"] == (256, 512, 3, 3) and k["reg_layer.2.weight"] == (128, 256, 3, 3)
    assert k["density_layer.0.weight"] == (1, 128, 1, 1) and len(k) == 16 * 2 + 4 + 2
    k = {n: tuple(t.shape) for n, t in sas.state_dict().items()}
    for name, shape in {"features1.0.weight": (64, 3, 3, 3), "features1.1.running_var": (64,),
                        "features2.1.weight": (128, 64, 3, 3), "features5.7.weight": (512, 512, 3, 3),
                        "features5.8.num_batches_tracked": (), "de_pred5.0.conv.weight": (1024, 512, 3, 3),
                        "de_pred4.0.conv.weight": (512, 1024, 3, 3), "de_pred1.1.conv.bias": (64,),
                        "density_head5.0.branch3x3dbl_2.conv.weight": (512, 256, 5, 5),
                        "density_head5.0.branch1x1.bn.running_mean": (256,),
                        "density_head5.1.conv.weight": (1, 2048, 1, 1), "density_head1.1.conv.weight": (1, 256, 1, 1),
                        "confidence_head5.0.conv.weight": (256, 512, 1, 1),
                        "confidence_head2.1.conv.weight": (1, 32, 1, 1)}.items():
        assert k[name] == shape, name
    assert "density_head5.0.branch1x1.conv.bias" not in k  # BasicConv2d is bias-free


def test_author_checkpoint_with_wrapper_and_module_prefix_loads(tmp_path, images):
    """A CSRNet-pytorch style checkpoint: {'epoch', 'state_dict' (DataParallel), 'best_prec1', 'optimizer'}."""
    torch.manual_seed(3)
    model = CSRNet()  # full width, as released
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / "PartBmodel_best.pth.tar"
    torch.save({"epoch": 120, "arch": "csrnet", "state_dict": state, "best_prec1": np.float64(10.6),
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-7, "params": [0, 1]}]}}, path)
    ann = build_annotator(f"csrnet={path}")
    assert ann.name == "csrnet"
    with ann:
        got = ann.annotate(images[:1])[0]
        loaded = ann.model.state_dict()
    assert torch.equal(loaded["frontend.0.weight"], model.state_dict()["frontend.0.weight"])
    with torch.no_grad():
        x = counting.to_pixels(images[:1], torch.tensor(counting.IMAGENET_MEAN), torch.tensor(counting.IMAGENET_STD))
        expected = float(model.eval()(x).sum())
    assert got["count"] == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert ann.record()["weights_sha256"] == sha256_file(path)


def test_checkpoint_keys_that_do_not_fit_are_listed(tmp_path, models):
    dm_state = checkpoints.read_state_dict(models["counter_b"] / "model.safetensors")
    path = tmp_path / "wrong.pth"
    torch.save({"model": dm_state}, path)
    with pytest.raises(CheckpointError) as exc:
        counting.load_counter_checkpoint("csrnet", path, width_div=16)
    msg = str(exc.value)
    assert "csrnet" in msg and "Missing keys" in msg and "Unexpected keys" in msg
    assert "Missing keys (34): frontend.0.weight, frontend.0.bias, frontend.2.weight" in msg
    assert "Unexpected keys (38): density_layer.0.bias, density_layer.0.weight, features.0.bias" in msg
    assert "(8 more)" in msg


def test_shape_mismatch_is_reported(tmp_path, models):
    state = checkpoints.read_state_dict(models["counter_a"] / "model.safetensors")  # width_div 16
    path = tmp_path / "narrow.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"Shape mismatches: .*frontend\.0\.weight"):
        counting.load_counter_checkpoint("csrnet", path, width_div=8)


def test_pickle_needing_more_than_weights_is_refused(tmp_path):
    path = tmp_path / "full_model.pth"
    torch.save({"epoch": 3, "model": Smuggled()}, path)
    with pytest.raises(CheckpointError, match="needs more than weights") as exc:
        checkpoints.read_state_dict(path)
    assert "Smuggled" in str(exc.value) and "safetensors" in str(exc.value)
    with pytest.raises(CheckpointError, match="needs more than weights"):
        build_annotator(f"csrnet={path}").load()


def test_bad_folders_and_files(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"architecture": "resnet50"}')
    with pytest.raises(InputError, match="resnet50"):
        detect_kind(tmp_path / "m")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pth"):
        checkpoints.read_state_dict(tmp_path / "junk.pth")
    with pytest.raises(InputError, match="does not exist"):
        build_annotator(f"dmcount={tmp_path / 'missing.pth'}")


# -- depth and classification ----------------------------------------------------------------------------------
def test_depth_annotator_maps_at_image_size(models, images):
    ann = build_annotator(str(models["depth"]), batch_size=4)
    assert ann.task == "depth"
    with ann:
        out = ann.annotate(images)
    assert [o["depth"].shape for o in out] == [(im.height, im.width) for im in images]
    assert all(o["depth"].dtype == np.float16 and o["ok"] for o in out)
    assert not np.allclose(out[0]["depth"], out[0]["depth"].flat[0])  # a map, not a constant


def test_classifier_maps_labels_by_name(models, images):
    # the real set lists the classes in another order and case: labels follow the real set
    real = ["Bird", "CAT", "dog"]
    ann = build_annotator(str(models["classifier"]), class_names=real)
    ann_same = build_annotator(str(models["classifier"]), class_names=CLASSES)
    with ann, ann_same:
        out, ref = ann.annotate(images), ann_same.annotate(images)
    to_real = {0: 1, 1: 2, 2: 0}  # cat, dog, bird -> indices in `real`
    for o, r in zip(out, ref):
        assert o["ok"] and 0 <= o["label"] < 3 and 1 / 3 <= o["probability"] <= 1
        assert o["label"] == to_real[r["label"]] and o["probability"] == pytest.approx(r["probability"], rel=1e-5)
    with pytest.raises(InputError, match=r"\['horse'\]"):
        build_annotator(str(models["classifier"]), class_names=["cat", "horse"]).load()


def test_clip_zero_shot(models, images):
    ann = build_annotator(f"zs:clip-zeroshot={models['clip']}", class_names=CLASSES, batch_size=2)
    assert (ann.name, ann.task) == ("zs", "classification")
    with ann:
        out = ann.annotate(images)
    assert all(o["ok"] and o["label"] in (0, 1, 2) and 0 < o["probability"] <= 1 for o in out)
    with pytest.raises(InputError, match="class names"):
        build_annotator(str(models["clip"]), class_names=None).load()


def test_annotator_name_must_be_a_folder_name(models):
    with pytest.raises(InputError, match="annotator name"):
        build_annotator(str(models["counter_a"]), name="../x")
    with pytest.raises((ConfigError, ValueError)):
        build_annotator(str(models["counter_a"]), batch_size=0)


def test_counter_pixels_are_to_pixels_and_are_shared_only_between_the_same_normalisation(models, images):
    """uint8 -> device -> normalised there equals the float32 ``to_pixels`` path bit for bit; a batch is reused by
    a second counter only for the same array objects and the same mean/std/device/dtype."""
    from promptmix.annotation.annotators.base import as_rgb_array

    arrays = [as_rgb_array(images[0]), as_rgb_array(images[2])]  # one size
    a = build_annotator(str(models["counter_a"]), device="cpu")
    b = build_annotator(str(models["counter_b"]), device="cpu")
    a.load()
    b.load()
    try:
        x = a.pixels(arrays)
        ref = counting.to_pixels([Image.fromarray(v) for v in arrays], torch.tensor(a.config.image_mean),
                                 torch.tensor(a.config.image_std))
        assert torch.equal(x, ref) and x.is_contiguous()
        assert b.pixels(arrays) is x  # same arrays, same normalisation: normalised once
        assert b.pixels([v.copy() for v in arrays]) is not x  # equal values, other objects: not trusted
        b.config.image_std = tuple(s * 2 for s in b.config.image_std)
        b._std = b._std * 2
        other = b.pixels(arrays)
        assert other is not x and torch.allclose(other * 2, x, atol=1e-6)
    finally:
        a.unload()
        b.unload()
