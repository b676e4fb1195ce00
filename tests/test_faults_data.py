"""Fault injection, data side (issue 18, items 2-5): labels of other images, damaged chunks, poisoned fake
targets, misread raw inputs. Each test is a probe a hostile or unlucky user ran; each must end in a clear
error naming what is wrong, or in the bad part being set aside and redone, never in data silently wrong."""

from __future__ import annotations

import io
import math
import shutil
import tempfile

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.io
from PIL import Image

from promptmix import maps
from promptmix import schema as S
from promptmix.annotation.annotate.runner import annotate_run
from promptmix.annotation.annotators.base import Annotator
from promptmix.annotation.annotators.registry import register_annotator
from promptmix.annotation.filter.filtering import FilterConfig, filter_run
from promptmix.errors import ConfigError, InputError, PromptmixError
from promptmix.run_folder import RunFolder
from promptmix.testing import _annotators as tiny
from promptmix.testing.raw_datasets import shanghaitech_gt, write_shanghaitech_raw


# -- a tiny annotator whose labels depend on the pixels (so labels of other images are told apart) ----------
@register_annotator("probe-brightness", task="counting")
class BrightnessCounter(Annotator):
    """Density = the mean brightness of each 8x8 cell / 255, times ``arg``: labels follow the pixels."""

    task = "counting"

    def __init__(self, name, *, scale, **kwargs):
        super().__init__(name, **kwargs)
        self.scale = scale

    @classmethod
    def from_spec(cls, arg, *, name, revision=None, resolved=None, **kwargs):
        return cls(name, scale=float(arg), **kwargs)

    @property
    def output_stride(self):
        return 8

    def record(self):
        return {**super().record(), "weights_sha256": f"brightness-{self.scale}"}

    def load(self):
        pass

    def annotate(self, images):
        out = []
        for im in images:
            a = np.asarray(im.convert("L"), dtype=np.float32)
            h, w = a.shape[0] // 8, a.shape[1] // 8
            d = (a[:h * 8, :w * 8].reshape(h, 8, w, 8).mean(axis=(1, 3)) / 255.0 * self.scale).astype(np.float16)
            out.append({"count": float(d.astype(np.float32).sum()), "density": d, "ok": True})
        return out


SPECS = ["a:probe-brightness=1", "b:probe-brightness=2"]


def _images(n, seed):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture
def run(tmp_path):
    """An annotated run: 6 generated rows in chunks of 2 (write_generated_run), two annotators."""
    path = tiny.write_generated_run(tmp_path / "run", _images(6, seed=1), task="counting", chunk_size=2)
    annotate_run(path, SPECS, device="cpu")
    return path


def _regenerate(path, seed):
    """Delete RUN/images and generate again with another seed (the same plan: the same row ids, other images)."""
    shutil.rmtree(RunFolder(path).images)
    tiny.write_generated_run(path, _images(6, seed=seed), task="counting", chunk_size=2)


def _load(path, config="all"):
    return datasets.load_dataset(str(path), config, split="train", cache_dir=tempfile.mkdtemp(prefix="hf-load-"))


def _bad_files(folder):
    return sorted(p.name for p in folder.iterdir() if ".bad" in p.name)


# -- 2. provenance between stages ----------------------------------------------------------------------------
def test_annotate_redoes_labels_of_images_generated_again(run, caplog):
    _regenerate(run, seed=2)
    report = annotate_run(run, SPECS, device="cpu")
    assert [(a.chunks_written, a.chunks_skipped) for a in report.annotators] == [(3, 0), (3, 0)]
    assert "labels another version of" in caplog.text and "generated again" in caplog.text
    folder = RunFolder(run).annotator("a")
    assert _bad_files(folder) == [f"chunk-00000{c}.parquet.bad" for c in range(3)]  # set aside, never deleted
    # the labels now are those of the new images
    result = filter_run(run, FilterConfig(keep_percent=100, target="a"))
    rows = _load(result.out)
    with BrightnessCounter("a", scale=1.0) as ann:
        for row in rows:
            image = Image.open(io.BytesIO(row[S.IMAGE]["bytes"])) if isinstance(row[S.IMAGE], dict) else row[S.IMAGE]
            expected = ann.annotate([image])[0]["count"]
            assert row[S.ANNOTATIONS][0][S.COUNT] == pytest.approx(expected, rel=1e-3)


def test_filter_refuses_labels_of_other_images_naming_the_chunks(run):
    _regenerate(run, seed=2)
    with pytest.raises(InputError, match=r"annotations/a/chunk-000000\.parquet labels another version of "
                                         r".*images/chunk-000000\.parquet.*never joined.*promptmix annotate"):
        filter_run(run, FilterConfig(keep_percent=100))
    assert not (RunFolder(run).fake).exists() or not any(RunFolder(run).fake.iterdir())


def test_filter_refuses_one_stale_chunk_among_good_ones(run):
    """Only chunk 1 was generated again (a kill, a copy): filter names exactly that one."""
    fresh = tiny.write_generated_run(run.parent / "other", _images(6, seed=9), task="counting", chunk_size=2)
    shutil.copyfile(RunFolder(fresh).image_chunks().path(1), RunFolder(run).image_chunks().path(1))
    with pytest.raises(InputError, match=r"a/chunk-000001\.parquet labels another version of .*chunk-000001"):
        filter_run(run, FilterConfig(keep_percent=100))


# -- 3. verified chunks -----------------------------------------------------------------------------------------
def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zero(path):
    path.write_bytes(b"")


@pytest.mark.parametrize("damage", [_truncate, _zero], ids=["truncated", "zero-bytes"])
def test_chunk_store_never_counts_a_damaged_file_as_done(tmp_path, damage):
    path = tiny.write_generated_run(tmp_path / "run", _images(4, seed=1), task="counting", chunk_size=2)
    store = RunFolder(path).image_chunks()
    ids = store.row_ids(0, S.ROW_ID)
    assert store.problem(0, ids, column=S.ROW_ID) is None
    damage(store.path(0))
    why = store.problem(0, ids, column=S.ROW_ID)
    assert why is not None and ("not a readable Parquet chunk" in why or "empty (0 bytes" in why)
    assert not store.is_complete(0)  # not even without expected ids: existing is not enough
    bad = store.set_aside(0, why)
    assert bad.name == "chunk-000000.parquet.bad" and bad.exists() and not store.exists(0)


def test_chunk_store_names_a_chunk_stored_under_another_number(tmp_path):
    path = tiny.write_generated_run(tmp_path / "run", _images(4, seed=1), task="counting", chunk_size=2)
    store = RunFolder(path).image_chunks()
    shutil.copyfile(store.path(1), store.path(0))
    assert "is chunk 1 (its footer says so) stored under the name of chunk 0" in store.problem(0)


@pytest.mark.parametrize("damage", [_truncate, _zero], ids=["truncated", "zero-bytes"])
def test_annotate_sets_a_damaged_label_chunk_aside_and_redoes_it(run, damage, caplog):
    folder = RunFolder(run).annotator("b")
    damage(folder / "chunk-000001.parquet")
    report = annotate_run(run, SPECS, device="cpu")
    assert [(a.name, a.chunks_written, a.chunks_skipped) for a in report.annotators] == [("a", 0, 3), ("b", 1, 2)]
    assert _bad_files(folder) == ["chunk-000001.parquet.bad"] and "moved it aside" in caplog.text
    assert filter_run(run, FilterConfig(keep_percent=100)).rows == 6


@pytest.mark.parametrize("damage", [_truncate, _zero], ids=["truncated", "zero-bytes"])
def test_a_damaged_image_chunk_is_a_clear_error_in_annotate_and_filter(run, damage):
    path = RunFolder(run).image_chunks().path(2)
    damage(path)
    with pytest.raises(InputError, match=r"images/chunk-000002\.parquet is (not a readable Parquet chunk|empty).*"
                                         r"rerun the same `promptmix generate`"):
        annotate_run(run, SPECS, device="cpu")
    with pytest.raises(InputError, match=r"images/chunk-000002\.parquet"):
        filter_run(run, FilterConfig(keep_percent=100))


def test_image_chunk_with_the_wrong_rows_is_refused_not_joined(run):
    """A valid chunk file holding another chunk's rows: before, 2 duplicated and 2 missing row ids, exit 0."""
    store = RunFolder(run).image_chunks()
    shutil.copyfile(store.path(0), store.path(1))
    for call in (lambda: annotate_run(run, SPECS, device="cpu"), lambda: filter_run(run, FilterConfig(keep_percent=100))):
        with pytest.raises(InputError, match=r"chunk-000001\.parquet is chunk 0 \(its footer says so\)"):
            call()


def test_wrong_rows_without_a_footer_are_found_by_their_repeated_ids(run):
    """An image chunk written without promptmix's footer (another tool) that repeats another chunk's rows."""
    store = RunFolder(run).image_chunks()
    table = pq.read_table(store.path(0)).replace_schema_metadata({})
    pq.write_table(table, store.path(1))
    repeated = r"chunk-000001\.parquet holds row 'p0-00000', which .*chunk-000000\.parquet holds too"
    with pytest.raises(InputError, match=repeated):  # before: annotated, then 2 rows twice and 2 missing, exit 0
        annotate_run(run, SPECS, device="cpu")
    with pytest.raises(InputError, match=repeated):
        filter_run(run, FilterConfig(keep_percent=100))


# -- 3. verified resume in generate and in `promptmix run`'s cache ----------------------------------------------
@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from promptmix.testing._diffusion import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "sd")


def _generate_config(prompts, model):
    from promptmix.generation.generate.config import GenerateConfig

    return GenerateConfig(prompts=str(prompts), model=str(model), images_per_prompt=2, steps=2, chunk_size=2,
                          batch_size=2, size="24x24", device="cpu", task="counting")


@pytest.mark.parametrize("damage", ["truncated", "zero-bytes", "wrong-rows"])
def test_generate_resume_sets_a_bad_chunk_aside_and_generates_it_again(tmp_path, tiny_sd, damage, caplog):
    from promptmix.generation.generate.runner import generate

    prompts = tmp_path / "p.txt"
    prompts.write_text("a crowd\na street\n")
    config = _generate_config(prompts, tiny_sd)
    run = tmp_path / "run"
    generate(config, run)
    store = RunFolder(run).image_chunks()
    original = store.path(1).read_bytes()
    if damage == "truncated":
        _truncate(store.path(1))
    elif damage == "zero-bytes":
        _zero(store.path(1))
    else:
        shutil.copyfile(store.path(0), store.path(1))
    damaged = store.path(1).read_bytes()
    report = generate(config, run)
    assert (report.chunks_done, report.chunks_skipped) == (1, 1)
    assert store.path(1).read_bytes() == original  # generated again, byte-identical
    assert (store.folder / "chunk-000001.parquet.bad").read_bytes() == damaged  # kept aside, never deleted
    assert "moved it aside" in caplog.text


def test_promptmix_run_does_not_trust_a_cached_stage_whose_chunks_are_damaged(tmp_path, tiny_sd):
    from promptmix.annotation.annotate.config import AnnotateConfig
    from promptmix.pipeline.engine import CACHED, RAN, run_stages, step_of
    from promptmix.stage import get_stage

    prompts = tmp_path / "p.txt"
    prompts.write_text("a crowd\na street\n")
    run = RunFolder(tmp_path / "run")
    configs = {"generate": _generate_config(prompts, tiny_sd), "annotate": AnnotateConfig(annotators=SPECS,
                                                                                          device="cpu")}

    def steps():
        present = list(configs)
        return [step_of(get_stage(n), c, run, present) for n, c in configs.items()]

    assert [r.status for r in run_stages(run, steps())] == [RAN, RAN]
    assert [r.status for r in run_stages(run, steps())] == [CACHED, CACHED]
    store = run.image_chunks()
    original = store.path(0).read_bytes()
    _truncate(store.path(0))
    planned = run_stages(run, steps(), plan_only=True)
    assert planned[0].reason == "outputs not intact; redoes the bad chunks"
    results = run_stages(run, steps())
    assert [(r.status, r.reason) for r in results][0] == (RAN, "resumed") and results[1].status == RAN
    assert store.path(0).read_bytes() == original and (store.folder / "chunk-000000.parquet.bad").exists()
    assert filter_run(run, FilterConfig(keep_percent=100)).rows == 4
    # a damaged label chunk alone: annotate is not cached either, and redoes that one chunk
    _zero(run.annotator("b") / "chunk-000001.parquet")
    results = run_stages(run, steps())
    assert [(r.status, r.reason) for r in results] == [(CACHED, results[0].reason), (RAN, "resumed")]
    assert _bad_files(run.annotator("b")) == ["chunk-000001.parquet.bad"]


# -- 4. fake targets checked on load; NaN metrics stop training; r_mix 0 -----------------------------------------
def _write_fake(out, task, mutate, per_prompt=4):
    from datasets import Dataset

    from promptmix.testing.synthetic import fake_rows
    from promptmix.utils.io import write_hub_folder

    rows = fake_rows(task, ["p1"], per_prompt, size=(48, 64))
    mutate(rows)
    ds = Dataset.from_list(rows, features=S.fake_features(task))
    return write_hub_folder(out, {"kept": {"train": ds}, "all": {"train": ds}}, default="kept")


def _target(row):
    """The annotation holding a fake row's training target map (stored once: its target annotator's)."""
    return next(a for a in row[S.ANNOTATIONS] if a[S.ANNOTATOR] == row[S.TARGET_ANNOTATOR])


def _poison_map(key, value):
    def mutate(rows):
        m = maps.decode(_target(rows[2])[key]).copy()
        m[1, 1] = value
        _target(rows[2])[key] = maps.encode(m)
    return mutate


def _negate_map(key):
    def mutate(rows):
        _target(rows[2])[key] = maps.encode(-maps.decode(_target(rows[2])[key]))
    return mutate


def _resize_map(key):
    def mutate(rows):
        _target(rows[1])[key] = maps.encode(np.ones((96, 128)))  # twice the image's size: fits no output stride
    return mutate


def _wrong_image(rows):
    buf = io.BytesIO()
    Image.new("RGB", (40, 30)).save(buf, format="JPEG")
    rows[3][S.IMAGE] = {"bytes": buf.getvalue(), "path": None}  # the row still says 64x48


@pytest.mark.parametrize("task,mutate,problem", [
    ("counting", _poison_map(S.DENSITY, np.nan), r"row (\S+): its density map holds 1 NaN/inf values"),
    ("counting", _negate_map(S.DENSITY), r"row (\S+): its density map is negative: \d+ values below 0"),
    ("counting", _resize_map(S.DENSITY), r"row (\S+): its density map is 96x128 \(HxW\), which fits no output stride"),
    ("counting", _wrong_image, r"row (\S+): its image is 40x30 but the row says 64x48"),
    ("depth", _poison_map(S.DEPTH, np.inf), r"row (\S+): its depth map holds 1 NaN/inf values"),
    ("depth", _negate_map(S.DEPTH), r"row (\S+): its depth map is negative: \d+ values below 0"),
], ids=["nan", "negative", "map-size", "image-size", "depth-inf", "depth-negative"])
def test_poisoned_fake_targets_are_refused_naming_the_row(tmp_path, task, mutate, problem):
    from promptmix.testing.synthetic import write_real_dataset
    from promptmix.training.train.config import TrainConfig
    from promptmix.training.train.data import load_training_data

    real = write_real_dataset(tmp_path / "real", task, sizes={"train": 2, "validation": 1, "test": 1})
    fake = _write_fake(tmp_path / "fake", task, mutate)
    config = TrainConfig(task=task, real=str(real), fake=str(fake), mixing="promptmix", r_mix=2,
                         output_dir=str(tmp_path / "out"))
    with pytest.raises(InputError, match=r"fake dataset .*1 of 4 rows cannot be trained on: " + problem) as info:
        load_training_data(config)
    row_id = __import__("re").search(problem, str(info.value)).group(1)
    assert row_id.rstrip(":") in set(_load(fake, "kept")[S.ROW_ID])


def test_a_clean_fake_set_loads(tmp_path):
    from promptmix.testing.synthetic import write_fake_dataset, write_real_dataset
    from promptmix.training.train.config import TrainConfig
    from promptmix.training.train.data import load_training_data

    real = write_real_dataset(tmp_path / "real", "depth", sizes={"train": 2, "validation": 1, "test": 1})
    fake = write_fake_dataset(tmp_path / "fake", "depth", per_prompt=3)
    data = load_training_data(TrainConfig(task="depth", real=str(real), fake=str(fake), mixing="fake-only",
                                          output_dir=str(tmp_path / "o")))
    assert len(data.fake) == 3
    # counting maps with the small negative noise of a network without a final ReLU (CSRNet) load too
    creal = write_real_dataset(tmp_path / "creal", "counting", sizes={"train": 2, "validation": 1, "test": 1})
    cfake = _write_fake(tmp_path / "cfake", "counting", _poison_map(S.DENSITY, -0.004))
    data = load_training_data(TrainConfig(task="counting", real=str(creal), fake=str(cfake), mixing="fake-only",
                                          output_dir=str(tmp_path / "o2")))
    assert len(data.fake) == 4


def test_r_mix_0_with_promptmix_mixing_is_a_config_error():
    from promptmix.training.train.config import TrainConfig

    with pytest.raises(ConfigError, match="r_mix 0 draws no fake row.*--mixing none"):
        TrainConfig(task="counting", real="r", fake="f", mixing="promptmix", r_mix=0, output_dir="o")


def test_training_stops_when_a_validation_metric_is_nan(tmp_path, monkeypatch, fresh_accelerate_state):
    from promptmix.errors import TrainingError
    from promptmix.testing.synthetic import write_fake_dataset, write_real_dataset
    from promptmix.training.train import trainer
    from promptmix.training.train.config import TrainConfig

    real = write_real_dataset(tmp_path / "real", "counting", sizes={"train": 3, "validation": 2, "test": 2})
    fake = write_fake_dataset(tmp_path / "fake", "counting", per_prompt=2)
    real_evaluate = trainer.evaluate

    def nan_on_validation(*args, desc="eval", **kwargs):  # a network whose outputs went NaN (diverged)
        out = real_evaluate(*args, desc=desc, **kwargs)
        return {**out, "mae": math.nan} if desc == "validation" else out

    monkeypatch.setattr(trainer, "evaluate", nan_on_validation)
    config = TrainConfig(task="counting", real=str(real), fake=str(fake), mixing="promptmix", r_mix=2,
                         model="rescsrnet", width_div=16, epochs=1, batch_size=2, output_dir=str(tmp_path / "out"),
                         report_to="none", cpu=True)
    with pytest.raises(TrainingError, match=r"lr \S+, epoch 1: validation/mae nan: the network's outputs are not finite.*training stops"):
        trainer.train(config)
    assert not (tmp_path / "out" / "metrics.json").exists()


# -- 5. builders ----------------------------------------------------------------------------------------------
@pytest.fixture
def sht(tmp_path):
    root = write_shanghaitech_raw(tmp_path / "raw", part="B", n_train=5, n_test=2, size=(32, 24), people=(3, 6))
    return root, root / "part_B" / "train_data"


def _build(root, out, **kw):
    from promptmix.builders import build_shanghaitech

    return build_shanghaitech(root, "B", out, **kw)


def _gt(location, number=None):
    """A ShanghaiTech GT_IMG_n.mat dict holding ``location`` as given (DATA-FORMATS.md)."""
    st = np.zeros((1, 1), dtype=[("location", "O"), ("number", "O")])
    st[0, 0]["location"] = np.asarray(location, dtype=np.float64)
    st[0, 0]["number"] = np.array([[len(location) if number is None else number]], dtype=np.float64)
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = st
    return {"image_info": cell}


def test_transposed_points_are_an_error_naming_the_file(sht, tmp_path):
    root, train = sht
    gt = train / "ground-truth" / "GT_IMG_2.mat"
    pts = np.array([[3.0, 4.0], [10.0, 12.0], [20.0, 5.0], [7.5, 8.5]])
    scipy.io.savemat(gt, _gt(pts.T, number=4))  # (2, 4): x in row 0, y in row 1
    with pytest.raises(InputError, match=r"GT_IMG_2\.mat: head points have shape \(2, 4\), a transposed"):
        _build(root, tmp_path / "out")
    # exactly two points cannot tell: read by the layout, one point per row
    scipy.io.savemat(gt, shanghaitech_gt(pts[:2]))
    _build(root, tmp_path / "out")
    ds = _load_real(tmp_path / "out")
    row = next(r for r in ds if r[S.IMAGE_ID] == "train_data/IMG_2")
    assert np.allclose(row[S.POINTS], pts[:2]) and row[S.COUNT] == 2


def _load_real(out):
    loaded = datasets.load_dataset(str(out), cache_dir=tempfile.mkdtemp(prefix="hf-load-"))
    return datasets.concatenate_datasets([loaded[s] for s in loaded])


def test_a_number_field_that_disagrees_with_location_is_an_error(sht, tmp_path):
    root, train = sht
    gt = train / "ground-truth" / "GT_IMG_4.mat"
    scipy.io.savemat(gt, _gt([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], number=7))
    with pytest.raises(InputError, match=r"GT_IMG_4\.mat: its 'number' field says 7 heads but 'location' holds 3"):
        _build(root, tmp_path / "out")
    report = _build(root, tmp_path / "out", skip_bad=True)  # a bad item: --skip-bad leaves it out, counted
    assert [s.item.endswith("IMG_4.jpg") for s in report.skipped] == [True]


def _huge_header_jpeg(path, width=13000, height=13000):
    """A small JPEG whose SOF header claims ``width x height`` (the pixel data is that of a 16x16 image)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 90, 60)).save(buf, format="JPEG", quality=75)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 7] = height.to_bytes(2, "big")
    data[sof + 7:sof + 9] = width.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return len(data)


def test_an_image_above_the_pixel_limit_is_refused_from_its_header(sht, tmp_path, monkeypatch):
    root, train = sht
    size = _huge_header_jpeg(train / "images" / "IMG_3.jpg")
    assert size < 2000
    decoded = []
    real_load = Image.Image.load

    def spy(self):
        if self.size == (13000, 13000):
            decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(Image.Image, "load", spy)
    with pytest.raises(InputError, match=r"IMG_3\.jpg: its header says 13000 x 13000 = 169\.0 Mpx, above the limit "
                                         r"of 50 Mpx \(max_pixels 50000000\)"):
        _build(root, tmp_path / "out")
    assert decoded == []  # refused before decoding
    # the limit is a builder option: a lower one refuses these 32x24 images too
    (train / "images" / "IMG_3.jpg").unlink()
    (train / "ground-truth" / "GT_IMG_3.mat").unlink()
    with pytest.raises(InputError, match=r"IMG_1\.jpg: its header says 32 x 24 .*max_pixels 500\)"):
        _build(root, tmp_path / "out", max_pixels=500)


def test_the_pixel_limit_is_a_config_option_of_the_real_stage(sht, tmp_path):
    from promptmix.builders.config import RealConfig
    from promptmix.stage import get_stage

    root, _ = sht
    config = RealConfig.from_dict({"builder": "shanghaitech", "root": str(root), "part": "B", "out": str(tmp_path / "o"),
                                   "options": {"max_pixels": 100}}, section="real")
    with pytest.raises(PromptmixError, match=r"above the limit of 0\.0001 Mpx \(max_pixels 100\)"):
        get_stage("real").run(config, None)


def test_stem_collisions_are_an_error_naming_both_files(sht, tmp_path):
    root, train = sht
    shutil.copyfile(train / "images" / "IMG_2.jpg", train / "images" / "IMG_2.jpeg")
    with pytest.raises(InputError, match=r"IMG_2\.jpeg and .*IMG_2\.jpg have the same name 'IMG_2'"):
        _build(root, tmp_path / "out")


def test_a_streamed_fake_set_checks_each_row_as_an_epoch_fetches_it(tmp_path):
    """streaming: true cannot check the whole set before training (it may not fit the disk): each epoch's rows
    are checked as they are fetched, with the same message naming the row."""
    from promptmix.testing.synthetic import write_real_dataset
    from promptmix.training.train.config import TrainConfig
    from promptmix.training.train.data import SampleSettings, TrainSet, load_training_data
    from promptmix.training.train.mixing import FAKE

    real = write_real_dataset(tmp_path / "real", "counting", sizes={"train": 2, "validation": 1, "test": 1})
    fake = _write_fake(tmp_path / "fake", "counting", _poison_map(S.DENSITY, np.nan))
    config = TrainConfig(task="counting", real=str(real), fake=str(fake), mixing="promptmix", r_mix=2,
                         streaming=True, output_dir=str(tmp_path / "out"))
    data = load_training_data(config)
    ts = TrainSet(data, SampleSettings.from_config(config, output_stride=8))
    ts.prefetch([[(FAKE, 0, 0), (FAKE, 1, 1)]])  # clean rows
    with pytest.raises(InputError, match=r"1 of 2 rows cannot be trained on: row \S+: its density map holds 1 NaN"):
        ts.prefetch([[(FAKE, 2, 0), (FAKE, 3, 1)]])
