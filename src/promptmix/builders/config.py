"""``RealConfig``: the settings of stage ``real`` (which builder, which raw files)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..config import StageConfig, field
from ..errors import ConfigError


@dataclasses.dataclass(frozen=True)
class BuilderOption:
    """A further keyword option of a builder function: its default and how its command-line flag reads it."""

    name: str
    default: Any
    type: Any = None  # the flag's converter (default: the type of ``default``)
    nargs: str | int | None = None
    choices: tuple[Any, ...] | None = None
    metavar: str | None = None
    help: str = ""


def _wxh(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` -> ``(width, height)``."""
    import argparse

    w, sep, h = str(text).lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or int(w) < 1 or int(h) < 1:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 2560x1440; got {text!r}")
    return int(w), int(h)


def _opt(name: str, default: Any, **kw: Any) -> BuilderOption:
    return BuilderOption(name, default, **kw)


_REDUCED_COUNTS = _opt("reduced_counts", "train", choices=("train", "labelled"), help=(
    "what --reduced N counts: train (the training images; the validation split comes from the rest first) or "
    "labelled (train + validation: N images drawn, the validation split taken out of them, as the MVC paper's "
    "'4,000 labeled examples')"))
_SEED = _opt("seed", 42, help="seed of the splits")
_MAX_PIXELS = _opt("max_pixels", 50_000_000, help=(
    "largest image accepted, in pixels (width x height, read from the header before decoding); larger ones are "
    "bad items (default 50000000)"))


@dataclasses.dataclass(frozen=True)
class BuilderSpec:
    """One builder of ``promptmix real BUILDER``: its function in :mod:`promptmix.builders`, the task of the datasets
    it makes, the config keys it needs and may take, and its help."""

    function: str
    task: str | None
    keys: tuple[str, ...]  # required
    optional: tuple[str, ...] = ()
    #: further keyword options of the function (flags of the command; a test keeps them equal to its signature)
    options: tuple[BuilderOption, ...] = ()
    help: str = ""
    details: str = ""


#: every builder, by its name on the command line and in ``real.builder``
BUILDER_SPECS: dict[str, BuilderSpec] = {
    "shanghaitech": BuilderSpec("build_shanghaitech", "counting", ("root", "part"),
                                options=(_opt("validation_fraction", None, type=float,
                                              help="share of train_data moved to validation (default 0.2 for A, "
                                                   "0.1 for B)"), _SEED, _MAX_PIXELS), help=(
        "ShanghaiTech Part A or B (crowd counting)"), details="""\
Raw layout: ROOT/part_A/train_data/images/IMG_1.jpg + ROOT/part_A/train_data/ground-truth/GT_IMG_1.mat
(image_info[0,0][0,0][0] = (x, y) head points), same for test_data. Splits: test = test_data;
validation = 20 % (A) / 10 % (B) of train_data, numpy seed 42. Images are stored unchanged.

example:
  promptmix real shanghaitech --root data/ShanghaiTech --part A --out data/shta
"""),
    "ucf-qnrf": BuilderSpec("build_ucf_qnrf", "counting", ("root",),
                            options=(_opt("validation_fraction", 0.1), _opt("max_side", 1920), _SEED, _MAX_PIXELS),
                            help="UCF-QNRF (crowd counting)", details="""\
Raw layout: ROOT/Train/img_0001.jpg + ROOT/Train/img_0001_ann.mat (annPoints), ROOT/Test/...
Images are resized to fit 1920x1920 keeping the aspect ratio (points scaled, JPEG tables kept).
Splits: test = Test; validation = 10 % of Train, numpy seed 42.

example:
  promptmix real ucf-qnrf --root data/UCF-QNRF_ECCV18 --out data/ucf-qnrf
"""),
    "panda-crowd": BuilderSpec("build_panda_crowd", "counting", ("root",), options=(
        _opt("annotations", None, type=Path, nargs="+", metavar="JSON",
             help="the annotation files (default: every *.json in ROOT/image_annos)"),
        _opt("size", (2560, 1440), type=_wxh, metavar="WxH", help="size of the stored images (default 2560x1440)"),
        _opt("split", (30, 6, 9), type=int, nargs=3, metavar="N", help="train, validation and test images"),
        _SEED), help="PANDA-Crowd (crowd counting, a head box per person)", details="""\
Raw layout (the PANDA toolkit's): ROOT/image_train/<scene>/<image>.jpg + ROOT/image_annos/*.json mapping
'<scene>/<image>.jpg' to {"image size": {"height", "width"}, "objects list": [{"rect": {"tl": {"x","y"},
"br": {"x","y"}}}, ...]} with coordinates normalised to [0, 1]. Images are resized to exactly 2560x1440
(PromptMix IV-A; --size), JPEG tables kept; points = box centres, boxes kept (train with density_kernel box).
Splits: 30 / 6 / 9 images (train / validation / test) of a numpy seed-42 permutation.

example:
  promptmix real panda-crowd --root data/PANDA-Crowd --out data/panda-crowd
"""),
    "nyu-depth-v2": BuilderSpec("build_nyu_depth_v2", "depth", ("mat",), options=(_SEED,),
                                help="NYU Depth V2, labeled subset (depth)",
                                details="""\
Input: nyu_depth_v2_labeled.mat (MATLAB v7.3 / HDF5) with images (N,3,W,H) uint8, depths (N,W,H) float32
metres and scenes. Images are stored as PNG. Splits: 70 % / 10 % / 20 % of a numpy seed-42 permutation.

example:
  promptmix real nyu-depth-v2 --mat data/nyu_depth_v2_labeled.mat --out data/nyu
"""),
    "imagefolder": BuilderSpec("build_imagefolder", "classification", ("root",), ("reduced",),
                               options=(_REDUCED_COUNTS, _SEED, _MAX_PIXELS), help=(
        "an image folder: ROOT/<class>/<image>, optionally under train/ and test/ (classification)"), details="""\
Splits (numpy seed 42, stratified by class): test = ROOT/test, else 20 % of the train images (all images
without a split level); validation = ROOT/validation (or val), else 10 % of the train images left;
--reduced N then keeps N training images.
EXIF-rotated images are stored upright.

examples:
  promptmix real imagefolder --root data/caltech101/101_ObjectCategories --out data/caltech101
  promptmix real imagefolder --root data/toy --reduced 8 --out data/toy-real
"""),
    "hub": BuilderSpec("build_from_hub", None, ("dataset",), ("revision", "reduced"),
                       options=(_opt("image_column", "image", help="the image column (CIFAR: img)"),
                                _opt("label_column", "label", help="the label column (CIFAR-100: fine_label)"),
                                _REDUCED_COUNTS, _SEED, _MAX_PIXELS), help=(
        "any `datasets` source with an image and a label column (classification)"), details="""\
DATASET is a Hub id (needs the network, or a filled cache) or a local dataset folder. Its train,
validation (valid/val) and test splits are used when present; missing ones are made as for imagefolder.

examples:
  promptmix real hub --dataset uoft-cs/cifar10 --image-column img --out data/cifar10
  promptmix real hub --dataset uoft-cs/cifar100 --image-column img --label-column fine_label --reduced 4000 \\
      --out data/cifar100-reduced
"""),
}
BUILDERS = (*BUILDER_SPECS, "folder")  # folder: a dataset built before, used as it is
_TAKEN = {"out", "root", "part", "mat", "dataset", "reduced", "revision", "skip_bad"}


def builder_function(builder: str):
    """The function of ``promptmix.builders`` that ``builder`` runs."""
    from .. import builders

    return getattr(builders, BUILDER_SPECS[builder].function)


def builder_options(builder: str) -> dict[str, BuilderOption]:
    """The further keyword options of a builder (seed, validation_fraction...), by name."""
    return {o.name: o for o in BUILDER_SPECS[builder].options}


@dataclasses.dataclass
class RealConfig(StageConfig):
    """Where the real dataset comes from: a raw download (built with ``promptmix real ...``), a Hub
    dataset, or a folder already built."""

    _section = "real"

    builder: str = field(help="shanghaitech | ucf-qnrf | nyu-depth-v2 | imagefolder (raw downloads, built like "
                              "`promptmix real BUILDER`), hub (a Hub dataset with an image and a label/points "
                              "column), folder (a dataset already built by `promptmix real`, used as it is)",
                         choices=BUILDERS)
    root: Path | None = field(None, help="shanghaitech, ucf-qnrf, imagefolder: the raw dataset's root folder")
    part: str | None = field(None, help="shanghaitech: A or B", choices=(None, "A", "B"))
    mat: Path | None = field(None, help="nyu-depth-v2: nyu_depth_v2_labeled.mat")
    dataset: str | None = field(None, help="hub: dataset id, e.g. uoft-cs/cifar10")
    revision: str | None = field(None, help="hub, folder (a Hub id): dataset revision (branch, tag or commit)")
    path: str | None = field(None, help="folder: a built real dataset (folder or Hub id), e.g. runs/shtb/real")
    reduced: int | None = field(None, help="imagefolder, hub: keep this many training images, a seeded class-"
                                           "balanced subset (e.g. 4000 for 'CIFAR reduced')")
    skip_bad: bool = field(False, help="every builder: skip a missing, corrupt, CMYK, 16-bit or (counting) EXIF-rotated "
                                       "image or an unreadable annotation file (counted in the build summary) "
                                       "instead of stopping")
    options: dict[str, Any] = field(default_factory=dict,
                                    help="further keyword arguments of the builder function (promptmix.builders."
                                         "build_*): seed for every builder, validation_fraction for "
                                         "shanghaitech and ucf-qnrf (e.g. {validation_fraction: 0.2, seed: 42}), "
                                         "image_column/label_column for hub (e.g. {image_column: img, label_column: "
                                         "fine_label})")
    out: Path | None = field(None, help="where the built dataset goes (default RUN/real); not used by 'folder'",
                             runtime=True)
    task: str | None = field(None, help="the task the dataset must be of (checked once it is built or read); set by "
                                        "`promptmix run` to its task", choices=(None, "counting", "depth",
                                                                               "classification"))

    def validate(self) -> None:
        spec = BUILDER_SPECS.get(self.builder)
        need = spec.keys if spec is not None else ("path",)
        for key in need:
            if getattr(self, key) in (None, ""):
                self.fail(key, f"a value for builder {self.builder!r} (it needs {', '.join(need)})")
        allowed = set(need) | {"builder", "options", "out", "task"} | (
            set(spec.optional) | {"skip_bad"} if spec is not None else {"revision"})
        for f in dataclasses.fields(self):
            if f.name in allowed:
                continue
            if getattr(self, f.name) not in (None, False, {}, f.default):
                self.fail(f.name, f"nothing for builder {self.builder!r} (its keys: {', '.join(sorted(allowed))})")
        if self.reduced is not None and self.reduced < 1:
            self.fail("reduced", "null or an integer >= 1")
        if not isinstance(self.options, dict):
            self.fail("options", "a mapping of builder keyword arguments")
        if spec is not None:
            allowed_opts = sorted(builder_options(self.builder))
            for key in self.options:
                if key not in allowed_opts:
                    raise ConfigError(f"real.options.{key}: not an option of {spec.function}; allowed: "
                                      f"{', '.join(allowed_opts) or '(none)'}")

    @property
    def builder_task(self) -> str | None:
        """The task of the datasets this builder makes (None: it depends on the data)."""
        spec = BUILDER_SPECS.get(self.builder)
        return spec.task if spec is not None else None

    def local_inputs(self) -> list[Path]:
        """The local files this section reads (checked before the run; their content is in the stage key)."""
        out = [p for p in (self.root, self.mat) if p is not None]
        if self.builder == "shanghaitech" and self.root is not None:
            out = [Path(self.root) / f"part_{self.part}"]
        return [Path(p) for p in out]
