"""Model registry, shapes, parameter counts, the MAC counter, and ImageNet backbones from safetensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from promptmix.errors import CheckpointError, ConfigError, ModelLoadError
from promptmix.models import MODEL_NAMES, create_model
from promptmix.models.info import count_macs, model_info, parse_size


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_tiny_models_forward(name):
    torch.manual_seed(0)
    model = create_model(name, width_div=16, num_classes=3).eval()
    x = torch.randn(2, 3, 40, 48)
    with torch.no_grad():
        y = model(x)
    if model.task == "counting":
        assert y.shape == (2, 1, 5, 6)  # output stride 8
    elif model.task == "depth" and name == "guidedepth":  # clamps max_depth / output into [0.1, 10] m
        assert y.shape == (2, 1, 40, 48) and (y >= 0.1).all() and (y <= 10).all()
    elif model.task == "depth":
        assert y.shape == (2, 1, 40, 48) and (y > 0).all() and (y < 10).all()
    else:
        assert y.shape == (2, 3)


def test_parameter_counts_match_the_papers():
    def params(name, **kw):
        return model_info(name, 32, 32, **kw).params

    assert params("rescsrnet") == 1_568_705  # Table III: 1.57 M
    assert params("csrnet") == 16_263_489  # Table III: 16.26 M
    assert params("resnet18", num_classes=1000) == 11_689_512  # torchvision resnet18
    assert params("wrn-28-10", num_classes=10) == 36_479_194  # WRN-28-10: 36.5 M
    assert params("wrn-28-2", num_classes=10) == 1_467_610  # WRN-28-2: 1.5 M


def test_mac_counter_against_hand_computed_values():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),  # 8*3*9 per output pixel, 10x12 pixels
        torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4),  # 8*2*9 per pixel, 5x6
        torch.nn.ConvTranspose2d(8, 4, 2, stride=2),  # 8*5*6 inputs x 4*2*2
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 10 * 12, 7),  # 480*7
    )
    macs, layers = count_macs(model, 10, 12)
    assert layers == 4
    assert macs == 8 * 3 * 9 * 120 + 8 * 2 * 9 * 30 + 8 * 30 * 4 * 4 + 480 * 7


def test_rescsrnet_gmacs_at_1024x768():
    # conv1 (7x7, 3->64) at 384x512, layer1 4 x (3x3, 64->64) at 192x256, layer2 (3x3 64->128 + 1x1
    # downsample + 3 x 3x3 128->128) at 96x128, back end 6 x (3x3 128->128) and the 1x1 output at 96x128
    p1, p2, p3 = 384 * 512, 192 * 256, 96 * 128
    expected = (64 * 3 * 49 * p1 + 4 * 64 * 64 * 9 * p2 + (128 * 64 * 9 + 128 * 64 + 3 * 128 * 128 * 9) * p3
                + 6 * 128 * 128 * 9 * p3 + 128 * p3)
    info = model_info("rescsrnet", *parse_size("768x1024"))
    assert info.macs == expected
    assert round(info.gmacs, 2) == 26.41  # Table III (ptflops, with BN/ReLU): 26.54


def test_model_info_cli(capsys):
    from promptmix.cli import main

    assert main(["model-info", "--model", "rescsrnet", "csrnet", "--size", "768x1024"]) == 0
    out = capsys.readouterr().out
    assert "26.41" in out and "324.79" in out and "1.57" in out and "16.26" in out


def _torchvision_resnet18_file(tmp_path):
    torch.manual_seed(1)
    reference = create_model("resnet18", num_classes=1000)  # torchvision's key names and shapes
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    path = tmp_path / "resnet18.safetensors"
    save_file(state, str(path))
    return path, state


def test_resnet18_backbone_loads_into_rescsrnet_guidedepth_resnet18_and_resnet18(tmp_path):
    path, state = _torchvision_resnet18_file(tmp_path)
    res = create_model("rescsrnet", pretrained=str(path))
    assert torch.equal(res.state_dict()["frontend.layer2.0.downsample.0.weight"], state["layer2.0.downsample.0.weight"])
    assert torch.equal(res.state_dict()["frontend.bn1.running_var"], state["bn1.running_var"])
    assert res.pretrained_source["file"] == "resnet18.safetensors"
    depth = create_model("guidedepth-resnet18", pretrained=str(tmp_path))  # a folder with one safetensors file
    assert torch.equal(depth.state_dict()["encoder.layer3.1.conv2.weight"], state["layer3.1.conv2.weight"])
    cls = create_model("resnet18", num_classes=5, pretrained=str(path), cifar_stem=True)
    assert torch.equal(cls.state_dict()["layer4.1.bn2.weight"], state["layer4.1.bn2.weight"])
    assert cls.fc.weight.shape == (5, 512)  # the head stays new


def test_vgg16_backbone_loads_into_csrnet(tmp_path):
    torch.manual_seed(2)
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    state, idx, cin = {}, 0, 3
    for v in cfg:  # torchvision vgg16().features indices
        if v == "M":
            idx += 1
            continue
        state[f"features.{idx}.weight"] = torch.randn(v, cin, 3, 3)
        state[f"features.{idx}.bias"] = torch.randn(v)
        cin, idx = v, idx + 2
    state["classifier.6.weight"] = torch.randn(10, 4)  # heads are ignored
    save_file(state, str(tmp_path / "model.safetensors"))
    model = create_model("csrnet", pretrained=str(tmp_path))
    own = model.state_dict()
    for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21):
        assert torch.equal(own[f"frontend.{i}.weight"], state[f"features.{i}.weight"])
    assert "frontend.24.weight" not in own  # conv5 is not part of CSRNet


def test_bad_backbones_fail_clearly(tmp_path):
    path, state = _torchvision_resnet18_file(tmp_path)
    with pytest.raises(CheckpointError, match="vgg16 backbone weights are missing.*features.0.weight"):
        create_model("csrnet", pretrained=str(path))
    del state["layer2.1.conv2.weight"]
    save_file(state, str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointError, match="missing .*layer2.1.conv2.weight"):
        create_model("rescsrnet", pretrained=str(tmp_path / "partial.safetensors"))
    bad = {k: v for k, v in state.items()}
    bad["layer2.1.conv2.weight"] = torch.zeros(3, 3, 3, 3)
    save_file(bad, str(tmp_path / "shape.safetensors"))
    with pytest.raises(CheckpointError, match="shape"):
        create_model("rescsrnet", pretrained=str(tmp_path / "shape.safetensors"))
    (tmp_path / "weights.pth").write_bytes(b"not loaded")
    with pytest.raises(ModelLoadError, match="safetensors"):
        create_model("rescsrnet", pretrained=str(tmp_path / "weights.pth"))
    with pytest.raises(ModelLoadError, match="not-a-model"):
        create_model("rescsrnet", pretrained=str(tmp_path / "not-a-model"))
    with pytest.raises(ConfigError, match="no ImageNet backbone"):
        create_model("wrn-28-2", num_classes=10, pretrained=str(path))
    with pytest.raises(ConfigError, match="width_div 1"):
        create_model("rescsrnet", width_div=4, pretrained=str(path))
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("resnet18")


def test_imagenet_classifiers_have_torchvisions_parameter_counts():
    def params(name):
        return model_info(name, 32, 32, num_classes=1000).params

    assert params("resnet50") == 25_557_032  # torchvision resnet50
    assert params("wide-resnet50-2") == 68_883_240  # torchvision wide_resnet50_2
    assert params("efficientnet-b0") == 5_288_548  # torchvision efficientnet_b0 (its weights' num_params)
    assert round(model_info("resnet50", 224, 224, num_classes=1000).gmacs, 2) == 4.09  # the usual 4.1 GMACs
    assert round(model_info("efficientnet-b0", 224, 224, num_classes=1000).gmacs, 2) == 0.39  # 0.39 B FLOPs


def test_guidedepth_is_the_papers_network_and_model_info_reports_it(capsys):
    from promptmix.cli import main
    from promptmix.models.ddrnet import DDRNet23Slim

    model = create_model("guidedepth")
    assert isinstance(model.feature_extractor, DDRNet23Slim)
    assert [type(b).__name__ for b in (model.up_1, model.up_2, model.up_3)] == ["GuidedUpsamplingBlock"] * 3
    info = model_info("guidedepth", 480, 640)
    assert info.params == 5_824_513  # DDRNet-23-slim with its 64-channel head (5,698,912) + three GUBs
    assert main(["model-info", "--model", "guidedepth", "guidedepth-resnet18", "--size", "480x640"]) == 0
    out = capsys.readouterr().out
    assert "guidedepth " in out and "5.82" in out and f"{info.gmacs:.2f}" in out and "guidedepth-resnet18" in out


def _ddrnet_imagenet_checkpoint(tmp_path):
    """A checkpoint in the key layout of the DDRNet-23-slim ImageNet classifier (the authors' DDRNet23s_imagenet):
    the backbone's keys plus the classifier's own (down5, last_layer, linear), behind a 'module.' prefix."""
    from promptmix.models.ddrnet import DDRNet23Slim

    torch.manual_seed(3)
    backbone = DDRNet23Slim(out_features=64)
    state = {k: torch.randn_like(v.float()) if v.is_floating_point() else v.clone()
             for k, v in backbone.state_dict().items() if not k.startswith(("spp.", "final_layer."))}
    state["down5.0.weight"] = torch.randn(256, 128, 3, 3)
    state["last_layer.0.weight"] = torch.randn(1024, 512, 1, 1)
    state["linear.weight"], state["linear.bias"] = torch.randn(1000, 1024), torch.randn(1000)
    path = tmp_path / "ddrnet23s_imagenet.safetensors"
    save_file({f"module.{k}": v for k, v in state.items()}, str(path))
    return path, state


def test_ddrnet_imagenet_weights_load_into_guidedepth(tmp_path):
    path, state = _ddrnet_imagenet_checkpoint(tmp_path)
    model = create_model("guidedepth", pretrained=str(path))
    own = model.state_dict()
    for key in ("conv1.0.weight", "conv1.0.bias", "layer3_.1.conv2.weight", "layer5.0.downsample.0.weight",
                "compression4.1.running_var", "down4.3.weight"):
        assert torch.equal(own[f"feature_extractor.{key}"], state[key])
    assert model.pretrained_source["file"] == path.name
    del state["layer5_.0.conv3.weight"]
    save_file(state, str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointError, match="ddrnet23_slim backbone weights are missing.*layer5_.0.conv3.weight"):
        create_model("guidedepth", pretrained=str(tmp_path / "partial.safetensors"))
    with pytest.raises(ModelLoadError, match="DDRNet23s_imagenet.pth"):
        create_model("guidedepth", pretrained="imagenet")  # no Hub copy in that layout: says how to convert one


def test_efficientnet_and_resnet50_load_torchvision_layout_weights(tmp_path):
    torch.manual_seed(4)
    for name, head in (("efficientnet-b0", "classifier.1.weight"), ("resnet50", "fc.weight")):
        reference = create_model(name, num_classes=1000)  # torchvision's key names and shapes
        state = {k: v.clone() for k, v in reference.state_dict().items()}
        path = tmp_path / f"{name}.safetensors"
        save_file(state, str(path))
        model = create_model(name, num_classes=4, pretrained=str(path))
        own = model.state_dict()
        key = "features.5.2.block.2.fc1.weight" if name == "efficientnet-b0" else "layer3.5.conv3.weight"
        assert torch.equal(own[key], state[key]) and own[head].shape[0] == 4  # the head stays new


def test_guidedepth_loss_is_the_authors_and_zero_at_the_target():
    from promptmix.models.depth import depth_loss

    model = create_model("guidedepth", width_div=16).train()
    depth = torch.rand(2, 1, 24, 32) * 8 + 0.5
    norm = model.depth_norm(depth)
    assert torch.allclose(norm, 10.0 / depth) and torch.equal(model.depth_norm(torch.zeros(1, 1, 2, 2)),
                                                              torch.zeros(1, 1, 2, 2))
    assert model.loss_sum(norm, depth).item() == pytest.approx(0.0, abs=1e-5)  # perfect: L1, SSIM, gradient 0
    worse = model.loss_sum(norm + 1.0, depth).item()
    assert worse == pytest.approx(2 * 0.1 * 1.0 + float((1 - _ssim(norm + 1, norm)).clamp(0, 2).sum() / 2), rel=1e-4)
    assert depth_loss(norm, norm, value_range=10.0).shape == (2,)
    model.eval()
    assert torch.allclose(model.to_depth(norm), depth.clamp(0.1, 10.0), rtol=1e-5)


def _ssim(a, b):
    from promptmix.models.depth import ssim

    return ssim(a, b, 10.0)


@pytest.mark.parametrize("name", ["guidedepth", "efficientnet-b0", "wide-resnet50-2", "resnet50"])
def test_new_networks_train_one_toy_epoch(name, tmp_path):
    from promptmix.testing.synthetic import write_real_dataset
    from promptmix.training.train.config import TrainConfig
    from promptmix.training.train.trainer import train

    task = "depth" if name == "guidedepth" else "classification"
    real = write_real_dataset(tmp_path / "real", task, sizes={"train": 4, "validation": 2, "test": 2},
                              size=(32, 40) if task == "depth" else (32, 32))
    metrics = train(TrainConfig(task=task, real=str(real), model=name, width_div=16, epochs=1, lr=1e-3,
                                batch_size=2, report_to="none", cpu=True, output_dir=str(tmp_path / "out")))
    (epoch,) = metrics["history"]
    assert epoch["steps"] == 2 and torch.isfinite(torch.tensor(epoch["train_loss"]))
    key = "test/rmse" if task == "depth" else "test/top1"
    assert np.isfinite(metrics[key])
