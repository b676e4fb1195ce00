"""``promptmix annotate`` / ``filter`` end to end with tiny annotators: three tasks, resume, ranks, NaN, CLI."""

from __future__ import annotations

import json
import tempfile

import datasets
import numpy as np
import pytest
from PIL import Image

from promptmix import maps
from promptmix import schema as S
from promptmix.annotation.annotate import runner
from promptmix.annotation.annotate.runner import annotate_run
from promptmix.annotation.annotators import registry
from promptmix.annotation.annotators.base import Annotator
from promptmix.annotation.annotators.registry import build_annotator, register_annotator
from promptmix.annotation.filter.filtering import FilterConfig, filter_run
from promptmix.cli import main
from promptmix.errors import ConfigError, InputError, PromptmixError
from promptmix.run_folder import CHUNK_PATTERN, RunFolder
from promptmix.testing import _annotators as tiny


def annotator_dir(run, name):
    return RunFolder(run).annotator(name)


def chunk_filename(chunk):
    return CHUNK_PATTERN.format(chunk)


CLASSES = ["cat", "dog", "bird"]


@register_annotator("nan-test", task="counting")
class NanCounter(Annotator):
    """A test counter: uniform density of 1 per output pixel, NaN for images wider than ``arg`` pixels.

    It claims ``ok=True`` even then: the runner must flag NaN/inf itself.
    """

    task = "counting"

    def __init__(self, name, *, max_width, **kwargs):
        super().__init__(name, **kwargs)
        self.max_width = max_width

    @classmethod
    def from_spec(cls, arg, *, name, revision=None, resolved=None, **kwargs):
        return cls(name, max_width=int(arg), **kwargs)

    def load(self):
        pass

    def annotate(self, images):
        out = []
        for im in images:
            d = np.ones((im.height // 8, im.width // 8), np.float16)
            if im.width > self.max_width:
                d[0, 0] = np.nan
            out.append({"count": float(d.astype(np.float32).sum()), "density": d, "ok": True})
        return out


def load(path, config="kept"):
    """A fresh datasets cache per load (datasets 5.2 caches local Hub folders by name + README only)."""
    return datasets.load_dataset(str(path), config, split="train", cache_dir=tempfile.mkdtemp(prefix="hf-load-"))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from promptmix.testing import save_tiny_models

    root = tmp_path_factory.mktemp("run-models")
    out = save_tiny_models(root, keys=("counter_a", "counter_b", "depth", "classifier"), class_names=CLASSES)
    out["depth2"] = tiny.save_tiny_depth(root / "depth2", seed=1)
    out["clip"] = tiny.save_tiny_clip(root / "clip")
    return out


def _images(n):
    rng = np.random.default_rng(1)
    sizes = [(48, 32), (64, 48)]
    return [Image.fromarray(rng.integers(0, 255, (sizes[i % 2][1], sizes[i % 2][0], 3), dtype=np.uint8))
            for i in range(n)]


@pytest.fixture
def counting_run(tmp_path):
    return tiny.write_generated_run(tmp_path / "run", _images(6), task="counting", chunk_size=4)


def test_counting_annotate_resume_and_filter(counting_run, models, monkeypatch):
    specs = [str(models["counter_a"]), str(models["counter_b"])]
    report = annotate_run(counting_run, specs, batch_size=2, device="cpu")
    assert [(a.name, a.rows, a.chunks_written, a.chunks_skipped) for a in report.annotators] == [
        ("counter_a", 6, 2, 0), ("counter_b", 6, 2, 0)]
    a_dir = annotator_dir(counting_run, "counter_a")
    rec = json.loads((a_dir / "annotator.json").read_text())
    assert rec["architecture"] == "csrnet" and rec["output_stride"] == 8 and len(rec["weights_sha256"]) == 64
    chunk = load_chunk(a_dir / chunk_filename(1))
    assert chunk.features == S.annotation_features("counting") and len(chunk) == 2
    # stored values are what the annotator gives for the decoded JPEG
    first = load_chunk(a_dir / chunk_filename(0))[0]
    _, images = runner.read_chunk_images(counting_run / "images" / chunk_filename(0))
    with build_annotator(specs[0]) as ann:
        direct = ann.annotate(images[:1])[0]
    assert first[S.COUNT] == pytest.approx(direct["count"], rel=1e-5)
    assert maps.decode(first[S.DENSITY]).shape == (4, 6)  # 32x48 at stride 8
    stage = RunFolder(counting_run).read_manifest()["stages"]["annotate"]
    assert [a["name"] for a in stage["annotators"]] == ["counter_a", "counter_b"] and stage["task"] == "counting"

    # resume: only the missing chunk is redone
    (annotator_dir(counting_run, "counter_b") / chunk_filename(1)).unlink()
    kept_mtime = (a_dir / chunk_filename(0)).stat().st_mtime_ns
    again = annotate_run(counting_run, specs, batch_size=2, device="cpu")
    assert [(a.chunks_written, a.chunks_skipped, a.rows) for a in again.annotators] == [(0, 2, 0), (1, 1, 2)]
    assert (a_dir / chunk_filename(0)).stat().st_mtime_ns == kept_mtime

    result = filter_run(counting_run, FilterConfig(keep_percent=50))
    assert (result.rows, result.kept, result.flagged, result.target) == (6, 3, 0, "counter_a")
    full = load(result.out, "all")
    assert sum(full[S.KEPT]) == 3
    kept_q = [q for q, k in zip(full[S.QUALITY_SCORE], full[S.KEPT]) if k]
    dropped_q = [q for q, k in zip(full[S.QUALITY_SCORE], full[S.KEPT]) if not k]
    assert max(kept_q) <= min(dropped_q) and max(kept_q) == pytest.approx(result.threshold)
    for row in full:
        counts = [a[S.COUNT] for a in row[S.ANNOTATIONS]]
        assert row[S.QUALITY_SCORE] == pytest.approx(abs(counts[0] - counts[1]) / max(map(abs, counts)), rel=1e-4)

    # refiltering loads no annotator
    def boom(*a, **k):
        raise AssertionError("filter must not load an annotator")

    monkeypatch.setattr(registry, "build_annotator", boom)
    monkeypatch.setattr(runner, "build_annotator", boom)
    assert filter_run(counting_run, FilterConfig(keep_percent=100, target="mean")).kept == 6


def load_chunk(path):
    return datasets.Dataset.from_parquet(str(path), cache_dir=tempfile.mkdtemp(prefix="hf-load-"))


def test_depth_run(tmp_path, models):
    run = tiny.write_generated_run(tmp_path / "run", _images(3), task="depth", chunk_size=2)
    report = annotate_run(run, [str(models["depth"]), f"d2:{models['depth2']}"], batch_size=2, device="cpu")
    assert [a.name for a in report.annotators] == ["depth", "d2"]
    result = filter_run(run, FilterConfig(keep_percent=100, target="mean"))
    full = load(result.out, "all")
    assert full.features == S.fake_features("depth")
    assert sorted(maps.decode(r[S.DEPTH]).shape for r in full) == [(32, 48), (32, 48), (48, 64)]  # the mean
    assert all(q is not None and q > 0 for q in full[S.QUALITY_SCORE])  # two different random nets disagree


def test_classification_run(tmp_path, models):
    labels = [0, 1, 2, 1]
    run = tiny.write_generated_run(tmp_path / "run", _images(4), task="classification", class_names=CLASSES,
                                   labels=labels, chunk_size=4)
    farm = tiny.save_tiny_classifier(tmp_path / "farm", class_names=["horse", "cow", "pig"])
    with pytest.raises(InputError, match=r"no label for the real classes \['cat', 'dog', 'bird'\]"):
        annotate_run(run, [f"clip-zeroshot={models['clip']}", str(farm)], device="cpu")
    assert not (run / "annotations").exists()  # checked before any work
    annotate_run(run, [str(models["classifier"]), f"clip-zeroshot={models['clip']}"], device="cpu")
    result = filter_run(run, FilterConfig(keep_percent=50))
    assert result.annotators == ["classifier", "zeroshot-clip"] and result.kept == 2
    full = load(result.out, "all")
    assert full.features[S.LABEL].names == CLASSES
    import pyarrow.parquet as pq

    generated = pq.read_table(str(next((run / "images").glob("chunk-*.parquet"))), columns=[S.ROW_ID, S.LABEL])
    assert generated.column(S.LABEL).to_pylist() == labels
    by_row = dict(zip(generated.column(S.ROW_ID).to_pylist(), labels))  # the prompt's class, whatever the order
    assert full[S.LABEL] == [by_row[r] for r in full[S.ROW_ID]]
    for row in full:
        (ya, pa), (yb, pb) = [(a[S.LABEL], a[S.PROBABILITY]) for a in row[S.ANNOTATIONS]]
        expected = (abs(pa - pb) if ya == yb else pa + pb) / max(pa, pb)
        assert row[S.QUALITY_SCORE] == pytest.approx(expected, rel=1e-5)


def test_nan_rows_are_flagged_counted_and_never_kept(counting_run, models):
    report = annotate_run(counting_run, [str(models["counter_a"]), "nan-test=50"], device="cpu")
    assert [a.not_ok for a in report.annotators] == [0, 3]  # the three 64-px-wide images
    assert "3 with NaN/inf (flagged)" in report.summary()
    result = filter_run(counting_run, FilterConfig(keep_percent=100))
    assert (result.rows, result.kept, result.flagged) == (6, 3, 3)
    assert result.flagged_by_annotator == {"counter_a": 0, "nan-test": 3}
    full = load(result.out, "all")
    # `all`: the kept rows, then the dropped (flagged) ones
    assert full[S.ANNOTATION_OK] == [True] * 3 + [False] * 3 and full[S.KEPT] == [True] * 3 + [False] * 3
    assert [q is None for q in full[S.QUALITY_SCORE]] == [False] * 3 + [True] * 3


def test_bad_annotate_inputs(counting_run, models, tmp_path):
    with pytest.raises(ConfigError, match="counter_a is given twice.*NAME:SPEC"):
        annotate_run(counting_run, [str(models["counter_a"]), str(models["counter_a"])])
    with pytest.raises(InputError, match="is a depth model but the run's task is counting"):
        annotate_run(counting_run, [str(models["depth"])], device="cpu")
    annotate_run(counting_run, [f"cx:{models['counter_a']}"], device="cpu")
    with pytest.raises(ConfigError, match="different annotator.*another name"):
        annotate_run(counting_run, [f"cx:{models['counter_b']}"], device="cpu")
    with pytest.raises(InputError, match="run `promptmix generate"):
        annotate_run(tmp_path, [str(models["counter_a"])])
    # weights that fail to load register nothing: filter must not wait for a 'broken' annotator
    with pytest.raises(PromptmixError, match="config.json: neither a safetensors"):
        annotate_run(counting_run, [f"broken:csrnet={models['counter_a'] / 'config.json'}"], device="cpu")
    assert "broken" not in runner.annotated_names(counting_run)
    assert not (annotator_dir(counting_run, "broken") / runner.ANNOTATOR_JSON).exists()


def test_ranks_split_chunks_and_their_union_is_complete(counting_run, models, monkeypatch):
    class FakeState:
        def __init__(self, rank):
            self.process_index, self.num_processes = rank, 2
            self.is_main_process = rank == 0
            self.device = "cpu"

        def wait_for_everyone(self):
            pass

    import accelerate

    spec = [str(models["counter_a"])]
    monkeypatch.setattr(accelerate, "PartialState", lambda: FakeState(1))
    r1 = annotate_run(counting_run, spec, device="cpu")
    folder = annotator_dir(counting_run, "counter_a")
    assert sorted(p.name for p in folder.glob("chunk-*")) == [chunk_filename(1)] and r1.annotators[0].rows == 2
    assert "annotate" not in RunFolder(counting_run).read_manifest().get("stages", {})  # only rank 0 records
    monkeypatch.setattr(accelerate, "PartialState", lambda: FakeState(0))
    r0 = annotate_run(counting_run, spec, device="cpu")
    assert r0.annotators[0].rows == 4
    assert sorted(p.name for p in folder.glob("chunk-*")) == [chunk_filename(0), chunk_filename(1)]
    assert RunFolder(counting_run).read_manifest()["stages"]["annotate"]["annotators"][0]["complete"] is True


def test_cli_annotate_and_filter(counting_run, models, capsys, tmp_path):
    rc = main(["annotate", str(counting_run), "--annotator", str(models["counter_a"]),
               "--annotator", f"b:{models['counter_b']}", "--device", "cpu", "--batch-size", "3"])
    assert rc == 0 and "counter_a: 6 rows in 2 chunks" in capsys.readouterr().out
    out = tmp_path / "fake50"
    rc = main(["filter", str(counting_run), "--keep", "50", "--target", "b", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "rows: 6" in text and "kept: 3" in text and "target: b" in text
    assert len(load(out)) == 3
    assert main(["filter", str(counting_run), "--target", "nobody"]) == 1
    assert "got 'nobody'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["annotate", "--help"])
    assert "ARCH=CHECKPOINT_FILE" in capsys.readouterr().out


def test_cli_device_that_is_not_there_is_a_clear_error(counting_run, models, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc = main(["annotate", str(counting_run), "--annotator", str(models["depth"]), "--device", "cuda"])
    assert rc == 1 and "device 'cuda': CUDA is not available" in capsys.readouterr().err
    assert runner.annotated_names(counting_run) == []


def test_sasnet_annotations_of_the_old_forward_pass_are_not_reused(tmp_path):
    """Labels made before SASNet's density heads had their ReLU differ: such a folder is refused, not resumed."""
    import json

    from promptmix.annotation.annotate.runner import ANNOTATOR_JSON, _check_identity
    from promptmix.annotation.annotators.counting import IMPLEMENTATION

    folder = tmp_path / "sasnet"
    folder.mkdir()
    old = {"name": "sasnet", "task": "counting", "kind": "CountingAnnotator", "architecture": "sasnet",
           "weights_sha256": "ab" * 32, "spec": "sasnet=SHHB.pth"}
    (folder / ANNOTATOR_JSON).write_text(json.dumps(old))
    with pytest.raises(ConfigError, match="implementation"):
        _check_identity(folder, {**old, "implementation": IMPLEMENTATION["sasnet"]})
    _check_identity(folder, dict(old))  # the same record is accepted


def test_images_are_decoded_once_for_all_annotators_and_outputs_equal_the_per_annotator_path(counting_run, models,
                                                                                              monkeypatch):
    """Two counters over one run: one decode per chunk, and every output bit-identical to today's path
    (per annotator: PIL images -> float32 ``to_pixels`` on the CPU -> ``.to(device, dtype)`` -> forward)."""
    import torch

    from promptmix.models.counting import predict_density, to_pixels

    decoded, captured = [], {}
    real_read, real_rows = runner.read_chunk_images, runner._rows_to_dataset

    def read(path):
        decoded.append(path.name)
        return real_read(path)

    def rows(task, row_ids, outputs, name):
        captured[(name, row_ids[0])] = (list(row_ids), outputs)
        return real_rows(task, row_ids, outputs, name)

    monkeypatch.setattr(runner, "read_chunk_images", read)
    monkeypatch.setattr(runner, "_rows_to_dataset", rows)
    specs = [str(models["counter_a"]), str(models["counter_b"])]
    annotate_run(counting_run, specs, batch_size=3, device="cpu")
    assert sorted(decoded) == [chunk_filename(0), chunk_filename(1)]  # once per chunk, not per annotator
    assert len(captured) == 4
    for spec in specs:
        with build_annotator(spec, batch_size=3, device="cpu") as ann:
            for c in (0, 1):
                row_ids, images = real_read(counting_run / "images" / chunk_filename(c))
                got_ids, got = captured[(ann.name, row_ids[0])]
                assert got_ids == row_ids
                for idx in runner_group(images, 3):
                    with torch.inference_mode():
                        x = to_pixels([images[i] for i in idx], ann._mean, ann._std).to(ann.device, ann.dtype)
                        dens = predict_density(ann.model, ann.config, x).float().cpu().numpy()
                    for i, d in zip(idx, dens):
                        np.testing.assert_array_equal(got[i]["density"], d.astype(np.float16))
                        assert got[i]["count"] == float(d.sum(dtype=np.float64))


def runner_group(images, batch):
    from promptmix.annotation.annotators.base import group_by_size

    return list(group_by_size(images, batch))


def test_an_annotator_failing_mid_run_leaves_whole_chunks_and_a_rerun_finishes(counting_run, models, monkeypatch):
    from promptmix.annotation.annotators.counting import CountingAnnotator

    specs = [str(models["counter_a"]), str(models["counter_b"])]
    real = CountingAnnotator.annotate_arrays
    calls = []

    def flaky(self, arrays):
        calls.append(self.name)
        # chunk 0 is 4 images of 2 sizes (2 batches), so counter_b's third batch is the first of chunk 1
        if self.name == "counter_b" and calls.count("counter_b") == 3:
            raise RuntimeError("device lost")
        return real(self, arrays)

    monkeypatch.setattr(CountingAnnotator, "annotate_arrays", flaky)
    with pytest.raises(RuntimeError, match="device lost"):
        annotate_run(counting_run, specs, batch_size=4, device="cpu")
    b_dir = annotator_dir(counting_run, "counter_b")
    assert (b_dir / chunk_filename(0)).exists() and not (b_dir / chunk_filename(1)).exists()
    assert not [p for p in b_dir.iterdir() if p.name.startswith(".")]  # no temporary left behind
    monkeypatch.setattr(CountingAnnotator, "annotate_arrays", real)
    again = annotate_run(counting_run, specs, batch_size=4, device="cpu")
    assert [(a.name, a.chunks_written, a.chunks_skipped) for a in again.annotators] == [
        ("counter_a", 1, 1), ("counter_b", 1, 1)]
