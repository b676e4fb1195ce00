"""``filter_run`` on stored annotations with hand-chosen values: scores, kept rows, flags, targets, the folder."""

from __future__ import annotations

import json

import datasets
import pyarrow.parquet as pq
import numpy as np
import pytest
from PIL import Image

from promptmix import maps
from promptmix import schema as S
from promptmix.annotation.annotate import runner
from promptmix.annotation.annotators import registry
from promptmix.annotation.filter.filtering import FilterConfig, filter_run
from promptmix.errors import ConfigError, InputError
from promptmix.run_folder import CHUNK_PATTERN, RunFolder
from promptmix.testing._annotators import write_generated_run
from promptmix.utils.io import write_json_atomic

A_COUNTS = [10, 10, 10, 10, 10, 10]
B_COUNTS = [10, 12, 9, 15, 4, float("nan")]  # q = 0, 2/12, 1/10, 5/15, 6/10, flagged


def load(path, config="kept"):
    """``load_dataset`` with a fresh cache: datasets 5.2 keys the cache of a local Hub-layout folder by its
    name and README only, so two folders named ``fake`` (or a rewritten one) would share a stale cache."""
    import tempfile

    return datasets.load_dataset(str(path), config, split="train", cache_dir=tempfile.mkdtemp(prefix="hf-load-"))


def _images(n, size=(16, 16)):
    return [Image.new("RGB", size, (20 * i, 50, 90)) for i in range(n)]


def _store(run_dir, name, task, outputs, chunk_size=3, record=None):
    """Write an annotator's folder as ``promptmix annotate`` does, from per-row output dicts."""
    plan_rows = []
    for c, path in RunFolder(run_dir).image_chunks().list():
        import pyarrow.parquet as pq

        plan_rows.append((c, path, pq.read_table(str(path), columns=[S.ROW_ID]).column(0).to_pylist()))
    folder = RunFolder(run_dir).annotator(name)
    write_json_atomic(folder / runner.ANNOTATOR_JSON, record or {"name": name, "task": task, "spec": f"test:{name}"})
    i = 0
    for c, path, row_ids in plan_rows:
        ds = runner._rows_to_dataset(task, row_ids, outputs[i:i + len(row_ids)], name)
        # the footer names the image chunk it labels (its sha256), as annotate writes it
        RunFolder(run_dir).annotation_chunks(name).write(c, ds, footer=runner.label_footer(path))
        i += len(row_ids)


def _uniform(count, side):
    return {S.COUNT: float(count), S.DENSITY: np.full((side, side), count / side**2, np.float16),
            S.OK: bool(np.isfinite(count))}


@pytest.fixture
def counting_run(tmp_path):
    run = write_generated_run(tmp_path / "run", _images(6), task="counting", chunk_size=3)
    _store(run, "a", "counting", [_uniform(c, 2) for c in A_COUNTS])
    _store(run, "b", "counting", [_uniform(c, 4) for c in B_COUNTS])
    return run


def test_scores_kept_rows_flags_and_the_folder(counting_run):
    report = filter_run(counting_run, FilterConfig(keep_percent=60))
    assert (report.rows, report.kept, report.flagged) == (6, 3, 1)
    assert report.flagged_by_annotator == {"a": 0, "b": 1}
    assert report.threshold == pytest.approx(2 / 12, rel=1e-4)
    assert report.annotators == ["a", "b"] and report.target == "a"
    assert report.out == counting_run / "fake"
    summary = report.summary()
    assert "rows: 6" in summary and "kept: 3" in summary and "flagged (NaN/inf annotations, not kept): 1" in summary

    full = load(report.out, "all")
    assert full.features == S.fake_features("counting")
    q = full[S.QUALITY_SCORE]
    assert q[:5] == pytest.approx([0.0, 2 / 12, 1 / 10, 5 / 15, 6 / 10], rel=1e-3) and q[5] is None
    assert full[S.KEPT] == [True, True, True, False, False, False]
    assert full[S.ANNOTATION_OK] == [True] * 5 + [False]
    assert [a[S.ANNOTATOR] for a in full[0][S.ANNOTATIONS]] == ["a", "b"]
    assert full[5][S.ANNOTATIONS][1][S.OK] is False and full[5][S.DENSITY] is None
    # target: the first annotator's map at its own resolution, stored once (in annotations); count = its sum
    assert full[1][S.DENSITY] is None
    target = maps.decode(S.fake_target_map(full[1], S.DENSITY))
    assert target.shape == (2, 2) and full[1][S.COUNT] == pytest.approx(10.0, rel=1e-3)
    assert set(full[S.TARGET_ANNOTATOR]) == {"a"}
    # `all` is the kept shards plus the dropped ones: every row is written once
    rows = {part: sum(pq.ParquetFile(str(f)).metadata.num_rows for f in (report.out / "data" / part).glob("*.parquet"))
            for part in ("kept", "dropped")}
    assert rows == {"kept": 3, "dropped": 3} and sorted(p.name for p in (report.out / "data").iterdir()) == \
        ["dropped", "kept"]

    kept = load(report.out)  # default config: kept
    assert kept[S.ROW_ID] == full[S.ROW_ID][:3] and all(kept[S.KEPT])
    readme = (report.out / "README.md").read_text()
    assert "config_name: kept" in readme and "config_name: all" in readme
    stage = RunFolder(counting_run).read_manifest()["stages"]["filter"]
    assert stage["kept"] == 3 and stage["flagged"] == 1 and stage["config"]["keep_percent"] == 60.0


def test_refilter_reads_stored_annotations_only(counting_run, monkeypatch, tmp_path):
    filter_run(counting_run, FilterConfig(keep_percent=60))

    def boom(*a, **k):
        raise AssertionError("filter must not load an annotator")

    monkeypatch.setattr(registry, "build_annotator", boom)
    monkeypatch.setattr(runner, "build_annotator", boom)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    report = filter_run(counting_run, FilterConfig(keep_percent=100, target="mean", out=tmp_path / "fake100"))
    assert (report.kept, report.flagged) == (5, 1)
    full = load(tmp_path / "fake100", "all")
    assert full[S.KEPT] == [True] * 5 + [False]
    # mean target: b's 4x4 map resized to a's 2x2 with its mass kept, then averaged (stored in `density`)
    assert maps.decode(full[1][S.DENSITY]).shape == (2, 2)
    assert maps.decode(full[1][S.DENSITY]).sum() == pytest.approx((10 + 12) / 2, rel=1e-3)
    assert full[1][S.COUNT] == pytest.approx((10 + 12) / 2, rel=1e-3)
    assert full[4][S.COUNT] == pytest.approx((10 + 4) / 2, rel=1e-3)
    assert set(full[S.TARGET_ANNOTATOR]) == {"mean"}
    named = filter_run(counting_run, FilterConfig(keep_percent=100, target="b", out=tmp_path / "fake-b"))
    row = load(named.out, "all")[3]
    assert row[S.DENSITY] is None and row[S.TARGET_ANNOTATOR] == "b"
    assert maps.decode(S.fake_target_map(row, S.DENSITY)).shape == (4, 4) and row[S.COUNT] == pytest.approx(15, rel=1e-3)


def test_incomplete_annotator_and_bad_targets(counting_run):
    with pytest.raises(ConfigError, match=r"'first', 'mean' or one of the run's annotators \(a, b\); got 'c'"):
        filter_run(counting_run, FilterConfig(target="c"))
    (RunFolder(counting_run).annotator("b") / CHUNK_PATTERN.format(1)).unlink()
    with pytest.raises(InputError, match=r"annotator 'b' is incomplete: .*chunk-000001.parquet is missing"):
        filter_run(counting_run, FilterConfig(keep_percent=50))


def test_one_annotator_keeps_all_valid_rows(tmp_path):
    run = write_generated_run(tmp_path / "run", _images(4), task="counting", chunk_size=4)
    _store(run, "only", "counting", [_uniform(c, 2) for c in (3, float("inf"), 5, 7)], chunk_size=4)
    with pytest.raises(ConfigError, match="at least two annotators"):
        filter_run(run, FilterConfig(keep_percent=50))
    report = filter_run(run, FilterConfig(keep_percent=100))
    assert (report.kept, report.flagged, report.threshold) == (3, 1, None)
    full = load(report.out, "all")
    assert full[S.QUALITY_SCORE] == [None] * 4 and full[S.KEPT] == [True, True, True, False]  # kept, then dropped
    assert full[S.ROW_ID] == [load(report.out)[S.ROW_ID][i] for i in range(3)] + [full[S.ROW_ID][3]]


def test_classification_scores_and_prompt_labels(tmp_path):
    names = ["cat", "dog", "bird"]
    labels = [0, 1, 2, 0]
    run = write_generated_run(tmp_path / "run", _images(4), task="classification", class_names=names,
                              labels=labels, chunk_size=2)
    a = [(0, 0.9), (1, 0.8), (2, 0.5), (1, 0.6)]
    b = [(0, 0.6), (2, 0.4), (2, 0.5), (0, 0.9)]
    _store(run, "clf", "classification", [{S.LABEL: y, S.PROBABILITY: p, S.OK: True} for y, p in a])
    _store(run, "zs", "classification", [{S.LABEL: y, S.PROBABILITY: p, S.OK: True} for y, p in b])
    report = filter_run(run, FilterConfig(keep_percent=50))
    full = load(report.out, "all")
    # agree: |0.9-0.6|/0.9, disagree: (0.8+0.4)/0.8, agree: 0/0.5, disagree: (0.6+0.9)/0.9
    # (`all` lists the kept rows first: rows 0 and 2, then 1 and 3)
    assert full[S.QUALITY_SCORE] == pytest.approx([1 / 3, 0.0, 1.5, 1.5 / 0.9], rel=1e-5)
    assert full[S.KEPT] == [True, True, False, False]
    assert full.features[S.LABEL].names == names and full[S.LABEL] == [labels[i] for i in (0, 2, 1, 3)]
    assert set(full[S.TARGET_ANNOTATOR]) == {"prompt"}


def test_depth_scores_and_mean_target(tmp_path):
    run = write_generated_run(tmp_path / "run", _images(2, (8, 4)), task="depth", chunk_size=2)
    _store(run, "d1", "depth", [{S.DEPTH: np.full((4, 8), v, np.float16), S.OK: True} for v in (2.0, 4.0)])
    _store(run, "d2", "depth", [{S.DEPTH: np.full((2, 4), v, np.float16), S.OK: True} for v in (3.0, 4.0)])
    report = filter_run(run, FilterConfig(keep_percent=50, target="mean"))
    full = load(report.out, "all")
    assert full[S.QUALITY_SCORE] == pytest.approx([0.0, 1 / 3])  # kept row first
    assert full[S.KEPT] == [True, False]
    depth = maps.decode(full.with_format("numpy")[1][S.DEPTH])
    assert depth.shape == (4, 8) and np.allclose(depth, 2.5)


def test_annotations_in_the_old_nested_list_layout_still_filter(counting_run, tmp_path):
    """Run folders annotated before maps became structs (nested lists) are read, and written in the new layout."""
    import pyarrow as pa

    for name in ("a", "b"):
        for c, path in RunFolder(counting_run).annotation_chunks(name).list():
            t = pq.read_table(str(path))
            old = pa.array([m.tolist() for m in maps.arrow_maps(t.column(S.DENSITY), dtype=np.float16)],
                           type=pa.list_(pa.list_(pa.float16())))
            pq.write_table(t.set_column(t.column_names.index(S.DENSITY), S.DENSITY, old), str(path))
    manifest = RunFolder(counting_run).manifest_path
    data = json.loads(manifest.read_text()) if manifest.exists() else {"stages": {}}
    manifest.write_text(json.dumps({**data, "format_version": 2}))  # a run of the previous format
    report = filter_run(counting_run, FilterConfig(keep_percent=60, target="b", out=tmp_path / "f"))
    full = load(report.out, "all")
    assert full.features == S.fake_features("counting") and full[S.KEPT] == [True] * 3 + [False] * 3
    assert maps.decode(S.fake_target_map(full[1], S.DENSITY)).shape == (4, 4) and full[1][S.COUNT] == \
        pytest.approx(12, rel=1e-3)
    assert RunFolder(counting_run).read_manifest()["format_version"] == 3


def test_filter_config_validates_and_round_trips(tmp_path):
    for bad in (0, -5, 150, "60"):
        with pytest.raises(ConfigError, match="keep_percent"):
            FilterConfig(keep_percent=bad)
    with pytest.raises(ConfigError, match="target"):
        FilterConfig(target="")
    cfg = FilterConfig(keep_percent=40, target="mean", out=tmp_path / "x")
    path = cfg.save(tmp_path / "f.yaml")
    again = FilterConfig.from_yaml(path)
    assert again == cfg and again.config_hash() == FilterConfig(keep_percent=40, target="mean").config_hash()
    assert json.loads(json.dumps(cfg.to_dict()))["keep_percent"] == 40.0
