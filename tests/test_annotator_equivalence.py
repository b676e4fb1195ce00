"""Our annotators compute what the authors' networks compute, on the same (random) weights.

For each counting architecture a reference module tree is written here from the authors' published code
(leeyeehoo/CSRNet-pytorch ``model.py``; cvlab-stonybrook/DM-Count ``models.py``;
TencentYoutuResearch/CrowdCounting-SASNet ``model.py`` with ``main.py``'s ``log_para``), with torchvision's
VGG ``make_layers`` spelled out since torchvision is not used here. The reference gets random weights
(and random BatchNorm statistics), which are saved the way each author saves them (CSRNet: a ``.pth.tar``
dict with ``state_dict``, the optimizer's state and scalar tensors; DM-Count and SASNet: plain state dicts,
also behind ``nn.DataParallel``'s ``module.`` prefix), loaded through ``--annotator ARCH=FILE`` (the
annotator ``promptmix annotate`` builds) and run on the same images. Density maps and counts are compared,
not keys. The authors' module trees have fixed widths, so they run at full width on small images.

Depth and classification annotators post-process a transformers model's output (resize to the image,
label mapping, softmax over the real classes): their outputs are compared with the plain model's on the
tiny random models of :mod:`promptmix.testing`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from promptmix.annotation.annotators.registry import build_annotator
from promptmix.models.counting import predict_density

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
COUNT_RTOL = 1e-3


# -- reference networks, as the authors wrote them ---------------------------------------------------------
def ref_make_layers(cfg, in_channels=3, batch_norm=False, dilation=False):
    """CSRNet's / DM-Count's / torchvision's ``make_layers`` (d_rate 2 for CSRNet's back end)."""
    d_rate = 2 if dilation else 1
    layers = []
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            conv2d = nn.Conv2d(in_channels, v, kernel_size=3, padding=d_rate, dilation=d_rate)
            layers += [conv2d, nn.BatchNorm2d(v), nn.ReLU(inplace=True)] if batch_norm else [conv2d, nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


class RefCSRNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = 0
        self.frontend = ref_make_layers([64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512])
        self.backend = ref_make_layers([512, 512, 512, 256, 128, 64], in_channels=512, dilation=True)
        self.output_layer = nn.Conv2d(64, 1, kernel_size=1)

    def forward(self, x):
        return self.output_layer(self.backend(self.frontend(x)))


class RefDMCount(nn.Module):
    """DM-Count's ``VGG(make_layers(cfg['E']))``."""

    def __init__(self):
        super().__init__()
        self.features = ref_make_layers([64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512,
                                         "M", 512, 512, 512, 512])
        self.reg_layer = nn.Sequential(nn.Conv2d(512, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                                       nn.Conv2d(256, 128, kernel_size=3, padding=1), nn.ReLU(inplace=True))
        self.density_layer = nn.Sequential(nn.Conv2d(128, 1, 1), nn.ReLU())

    def forward(self, x):
        x = self.features(x)
        x = F.upsample_bilinear(x, scale_factor=2)
        x = self.reg_layer(x)
        mu = self.density_layer(x)
        B, C, H, W = mu.size()
        mu_sum = mu.view([B, -1]).sum(1).unsqueeze(1).unsqueeze(2).unsqueeze(3)
        return mu, mu / (mu_sum + 1e-6)


class RefSASConv2d(nn.Module):
    """SASNet's ``Conv2d`` wrapper with its defaults (``NL='relu'``, ``same_padding=False``, ``bn=False``)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, NL="relu", same_padding=False, bn=False,
                 dilation=1):
        super().__init__()
        padding = int((kernel_size - 1) // 2) if same_padding else 0
        if dilation == 1:
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=padding, dilation=dilation)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=dilation, dilation=dilation)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001, momentum=0, affine=True) if bn else nn.Identity()
        self.relu = nn.ReLU(inplace=True) if NL == "relu" else (nn.PReLU() if NL == "prelu" else None)

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x


class RefBasicConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


class RefMultiBranchModule(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.branch1x1 = RefBasicConv2d(in_channels, in_channels // 2, kernel_size=1)
        self.branch1x1_1 = RefBasicConv2d(in_channels // 2, in_channels, kernel_size=1)
        self.branch3x3_1 = RefBasicConv2d(in_channels, in_channels // 2, kernel_size=1)
        self.branch3x3_2 = RefBasicConv2d(in_channels // 2, in_channels, kernel_size=(3, 3), padding=(1, 1))
        self.branch3x3dbl_1 = RefBasicConv2d(in_channels, in_channels // 2, kernel_size=1)
        self.branch3x3dbl_2 = RefBasicConv2d(in_channels // 2, in_channels, kernel_size=5, padding=2)

    def forward(self, x):
        branch1x1 = self.branch1x1_1(self.branch1x1(x))
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([branch1x1, branch3x3, branch3x3dbl, x], 1)


class RefSASNet(nn.Module):
    """SASNet's ``model.py`` with ``models.vgg16_bn().features`` written out (torchvision cfg 'D', batch norm)."""

    def __init__(self, block_size=32):
        super().__init__()
        features = list(ref_make_layers([64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                                         512, 512, 512, "M"], batch_norm=True).children())
        self.features1 = nn.Sequential(*features[0:6])
        self.features2 = nn.Sequential(*features[6:13])
        self.features3 = nn.Sequential(*features[13:23])
        self.features4 = nn.Sequential(*features[23:33])
        self.features5 = nn.Sequential(*features[33:43])
        C = RefSASConv2d
        self.de_pred5 = nn.Sequential(C(512, 1024, 3, same_padding=True, NL="relu"),
                                      C(1024, 512, 3, same_padding=True, NL="relu"))
        self.de_pred4 = nn.Sequential(C(512 + 512, 512, 3, same_padding=True, NL="relu"),
                                      C(512, 256, 3, same_padding=True, NL="relu"))
        self.de_pred3 = nn.Sequential(C(256 + 256, 256, 3, same_padding=True, NL="relu"),
                                      C(256, 128, 3, same_padding=True, NL="relu"))
        self.de_pred2 = nn.Sequential(C(128 + 128, 128, 3, same_padding=True, NL="relu"),
                                      C(128, 64, 3, same_padding=True, NL="relu"))
        self.de_pred1 = nn.Sequential(C(64 + 64, 64, 3, same_padding=True, NL="relu"),
                                      C(64, 64, 3, same_padding=True, NL="relu"))
        # the density heads' last Conv2d keeps the wrapper's default NL='relu'
        self.density_head5 = nn.Sequential(RefMultiBranchModule(512), C(2048, 1, 1, same_padding=True))
        self.density_head4 = nn.Sequential(RefMultiBranchModule(256), C(1024, 1, 1, same_padding=True))
        self.density_head3 = nn.Sequential(RefMultiBranchModule(128), C(512, 1, 1, same_padding=True))
        self.density_head2 = nn.Sequential(RefMultiBranchModule(64), C(256, 1, 1, same_padding=True))
        self.density_head1 = nn.Sequential(RefMultiBranchModule(64), C(256, 1, 1, same_padding=True))
        self.confidence_head5 = nn.Sequential(C(512, 256, 1, same_padding=True, NL="relu"),
                                              C(256, 1, 1, same_padding=True, NL=None))
        self.confidence_head4 = nn.Sequential(C(256, 128, 1, same_padding=True, NL="relu"),
                                              C(128, 1, 1, same_padding=True, NL=None))
        self.confidence_head3 = nn.Sequential(C(128, 64, 1, same_padding=True, NL="relu"),
                                              C(64, 1, 1, same_padding=True, NL=None))
        self.confidence_head2 = nn.Sequential(C(64, 32, 1, same_padding=True, NL="relu"),
                                              C(32, 1, 1, same_padding=True, NL=None))
        self.confidence_head1 = nn.Sequential(C(64, 32, 1, same_padding=True, NL="relu"),
                                              C(32, 1, 1, same_padding=True, NL=None))
        self.block_size = block_size

    def forward(self, x):
        size = x.size()
        x1 = self.features1(x)
        x2 = self.features2(x1)
        x3 = self.features3(x2)
        x4 = self.features4(x3)
        x5 = self.features5(x4)
        x = self.de_pred5(x5)
        x5_out = x
        x = F.upsample_bilinear(x, size=x4.size()[2:])
        x = self.de_pred4(torch.cat([x4, x], 1))
        x4_out = x
        x = F.upsample_bilinear(x, size=x3.size()[2:])
        x = self.de_pred3(torch.cat([x3, x], 1))
        x3_out = x
        x = F.upsample_bilinear(x, size=x2.size()[2:])
        x = self.de_pred2(torch.cat([x2, x], 1))
        x2_out = x
        x = F.upsample_bilinear(x, size=x1.size()[2:])
        x = self.de_pred1(torch.cat([x1, x], 1))
        x1_out = x
        outs = [x5_out, x4_out, x3_out, x2_out, x1_out]
        heads = [self.density_head5, self.density_head4, self.density_head3, self.density_head2, self.density_head1]
        conf_heads = [self.confidence_head5, self.confidence_head4, self.confidence_head3, self.confidence_head2,
                      self.confidence_head1]
        grid = (size[-2] // self.block_size, size[-1] // self.block_size)
        densities = [h(o) for h, o in zip(heads, outs)]
        confis = [h(F.adaptive_avg_pool2d(o, output_size=grid)) for h, o in zip(conf_heads, outs)]
        densities = [F.upsample_nearest(d, size=x1.size()[2:]) for d in densities]
        confis = [F.upsample_nearest(c, size=x1.size()[2:]) for c in confis]
        confidence_map = torch.nn.functional.sigmoid(torch.cat(confis, 1))
        confidence_map = torch.nn.functional.softmax(confidence_map, 1)
        density_map = torch.cat(densities, 1)
        density_map *= confidence_map
        return torch.sum(density_map, 1, keepdim=True)


# -- weights, images, the authors' save formats --------------------------------------------------------------
def randomise(model: nn.Module, seed: int, *, last_bias: tuple[str, float] | None = None) -> nn.Module:
    """He-normal convolutions, random biases, random BatchNorm affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_((torch.rand(m.bias.shape, generator=g) - 0.5) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_((torch.rand(m.bias.shape, generator=g) - 0.5) * 0.2)
                m.running_mean.copy_((torch.rand(m.running_mean.shape, generator=g) - 0.5) * 0.2)
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.num_batches_tracked.fill_(1000)
        if last_bias is not None:  # a positive crowd everywhere for networks ending in ReLU
            name, value = last_bias
            model.get_submodule(name).bias.fill_(value)
    return model.eval()


@pytest.fixture(scope="module")
def images():
    """Two sizes: one that divides by 32 and one that divides by nothing useful (odd pooling, odd grids)."""
    rng = np.random.default_rng(7)
    out = []
    for h, w in ((64, 96), (75, 103)):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * 255 / w), (yy * 255 / h), ((xx + yy) % 64) * 4], axis=-1)
        noise = rng.integers(0, 60, size=(h, w, 3))
        out.append(Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)))
    return out


def normalised(im: Image.Image) -> torch.Tensor:
    """torchvision's ``ToTensor()`` + ``Normalize(ImageNet mean, std)``, as all three authors load images."""
    x = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
    return ((x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1))[None]


def sgd_state(model: nn.Module) -> dict:
    """``optimizer.state_dict()`` of SGD with momentum after one step, as CSRNet's train.py saves it."""
    params = [p for p in model.parameters()]
    opt = torch.optim.SGD(params, lr=1e-7, momentum=0.9, weight_decay=5e-4)
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    for p in params:
        p.grad = None
    return opt.state_dict()


def save_csrnet_checkpoint(model: nn.Module, path) -> None:
    """CSRNet-pytorch's ``save_checkpoint``: epoch, arch, state_dict, best_prec1 (a 0-d tensor), optimizer."""
    torch.save({"epoch": 121, "arch": None, "state_dict": model.state_dict(),
                "best_prec1": torch.tensor(10.62), "optimizer": sgd_state(model)}, path)


def save_plain(model: nn.Module, path, *, data_parallel: bool) -> None:
    state = model.state_dict()
    if data_parallel:
        state = {f"module.{k}": v for k, v in state.items()}
    torch.save(state, path)


CASES = {
    # arch: (reference, seed, bias that keeps a ReLU-ended map alive, log_para, save)
    "csrnet": (RefCSRNet, 11, None, 1.0, lambda m, p: save_csrnet_checkpoint(m, p)),
    "dmcount": (RefDMCount, 12, ("density_layer.0", 0.05), 1.0, lambda m, p: save_plain(m, p, data_parallel=False)),
    "sasnet": (RefSASNet, 13, None, 1000.0, lambda m, p: save_plain(m, p, data_parallel=True)),
}
FILENAMES = {"csrnet": "PartBmodel_best.pth.tar", "dmcount": "model_qnrf.pth", "sasnet": "SHHB.pth"}


@pytest.mark.parametrize("arch", sorted(CASES))
def test_counting_annotator_equals_the_authors_network(arch, images, tmp_path, capsys):
    ref_cls, seed, last_bias, log_para, save = CASES[arch]
    torch.manual_seed(0)
    ref = randomise(ref_cls(), seed, last_bias=last_bias)
    path = tmp_path / FILENAMES[arch]
    save(ref, path)

    ann = build_annotator(f"{arch}={path}", device="cpu", dtype="float32", batch_size=2)
    with ann:
        ours = ann.annotate(images)
        with torch.no_grad():  # the float32 maps before the annotator stores them as float16
            maps32 = [predict_density(ann.model, ann.config, normalised(im))[0].double().numpy() for im in images]
    lines = []
    for im, o, map32 in zip(images, ours, maps32):
        with torch.no_grad():
            out = ref(normalised(im))
        ref_map = (out[0] if isinstance(out, tuple) else out)[0, 0].double().numpy() / log_para
        ref_count = float(ref_map.sum())
        assert abs(ref_count) > 1e-3 and ref_map.std() > 0, "the random reference must predict a crowd with structure"
        assert o["ok"] and o["density"].shape == ref_map.shape
        ours_map = o["density"].astype(np.float64)  # stored as float16
        max_abs = float(np.abs(ours_map - ref_map).max())
        rel_count = abs(o["count"] - ref_count) / abs(ref_count)
        max_abs32 = float(np.abs(map32 - ref_map).max())
        assert max_abs <= 2e-3 * float(np.abs(ref_map).max()), (arch, max_abs)  # float16 storage: 2^-11 relative
        assert max_abs32 <= 1e-4 * float(np.abs(ref_map).max()), (arch, max_abs32)
        assert rel_count <= COUNT_RTOL, (arch, o["count"], ref_count)
        lines.append(f"{arch} {im.height}x{im.width}: count ours {o['count']:.6g} authors {ref_count:.6g} "
                     f"rel diff {rel_count:.1e}; density max abs diff {max_abs32:.1e} (float32), {max_abs:.1e} "
                     f"(stored float16), map max {np.abs(ref_map).max():.3g}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_sasnet_density_heads_end_in_relu(images, tmp_path):
    """The bug this guards: without the ReLU after the density heads' last convolution the map goes negative."""
    ref = randomise(RefSASNet(), 5)
    for k in range(1, 6):  # make the heads' pre-activations mostly negative
        getattr(ref, f"density_head{k}")[1].conv.bias.data.fill_(-1.0)
    path = tmp_path / "SHHA.pth"
    save_plain(ref, path, data_parallel=False)
    ann = build_annotator(f"sasnet={path}", device="cpu", dtype="float32")
    with ann:
        out = ann.annotate(images[:1])[0]
    with torch.no_grad():
        ref_map = ref(normalised(images[0]))[0, 0].numpy() / 1000.0
    assert (out["density"] >= 0).all() and out["count"] >= 0
    assert out["count"] == pytest.approx(float(ref_map.sum()), rel=COUNT_RTOL, abs=1e-6)


# -- depth and classification: our post-processing against the plain transformers model ------------------------
@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    from promptmix.testing import _annotators as tiny

    root = tmp_path_factory.mktemp("hf-annotators")
    return {"depth": tiny.save_tiny_depth(root / "depth", seed=3),
            "classifier": tiny.save_tiny_classifier(root / "classifier", ("cat", "dog", "bird", "car", "kitty, cat"),
                                                    seed=4),
            "clip": tiny.save_tiny_clip(root / "clip", seed=5)}


def test_depth_annotator_is_the_model_output_resized_to_the_image(hf_models, images, capsys):
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    folder = hf_models["depth"]
    processor = AutoImageProcessor.from_pretrained(folder)
    model = AutoModelForDepthEstimation.from_pretrained(folder).eval()
    ann = build_annotator(str(folder), device="cpu", dtype="float32", batch_size=2)
    with ann:
        ours = ann.annotate(images)
    resized = 0
    for im, o in zip(images, ours):
        with torch.no_grad():
            pred = model(**processor(images=[im.convert("RGB")], return_tensors="pt")).predicted_depth  # (1, h, w)
        resized += pred.shape[-2:] != (im.height, im.width)  # the model works at the processor's size
        ref = F.interpolate(pred[:, None], size=(im.height, im.width), mode="bicubic", align_corners=False)[0, 0]
        ref = ref.double().numpy()
        assert o["depth"].shape == (im.height, im.width) and o["ok"]
        diff = float(np.abs(o["depth"].astype(np.float64) - ref).max())
        assert diff <= 2e-3 * float(np.abs(ref).max()), diff  # float16 storage, metres as the model gives them
        with capsys.disabled():
            print(f"\ndepth {im.height}x{im.width}: max abs diff {diff:.2e} (max depth {np.abs(ref).max():.3g})")
    assert resized == 1  # the 75x103 image is predicted at 64x96 and resized back


def test_classifier_probabilities_are_the_softmax_over_the_real_classes(hf_models, images):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    folder = hf_models["classifier"]
    processor = AutoImageProcessor.from_pretrained(folder)
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    real = ["Bird", "CAT", "dog"]  # 'cat' and 'kitty, cat' both mean CAT; 'car' is not a real class
    groups = [[2], [0, 4], [1]]
    ann = build_annotator(str(folder), class_names=real, device="cpu", dtype="float32", batch_size=2)
    with ann:
        ours = ann.annotate(images)
    with torch.no_grad():
        logits = model(**processor(images=[im.convert("RGB") for im in images], return_tensors="pt")).logits
    matched = [i for g in groups for i in g]
    p = torch.softmax(logits[:, matched].double(), dim=1)
    per_class, start = [], 0
    for g in groups:
        per_class.append(p[:, start:start + len(g)].sum(1))
        start += len(g)
    per_class = torch.stack(per_class, 1)
    for o, ref in zip(ours, per_class):
        assert o["label"] == int(ref.argmax()) and o["probability"] == pytest.approx(float(ref.max()), rel=1e-5)
    assert len({round(o["probability"], 6) for o in ours}) == len(ours)  # the images give different outputs


def test_clip_zero_shot_equals_clips_own_image_text_logits(hf_models, images):
    from transformers import AutoProcessor, CLIPModel

    from promptmix.annotation.annotators.classification import ZERO_SHOT_TEMPLATE

    folder = hf_models["clip"]
    names = ["cat", "dog", "bird"]
    processor = AutoProcessor.from_pretrained(folder)
    model = CLIPModel.from_pretrained(folder).eval()
    ann = build_annotator(f"clip-zeroshot={folder}", class_names=names, device="cpu", dtype="float32")
    with ann:
        ours = ann.annotate(images)
    inputs = processor(text=[ZERO_SHOT_TEMPLATE.format(n) for n in names],
                       images=[im.convert("RGB") for im in images], return_tensors="pt", padding=True)
    with torch.no_grad():
        probs = model(**inputs).logits_per_image.softmax(dim=1)
    for o, ref in zip(ours, probs):
        assert o["label"] == int(ref.argmax()) and o["probability"] == pytest.approx(float(ref.max()), rel=1e-4)
