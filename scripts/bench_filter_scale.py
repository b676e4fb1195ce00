#!/usr/bin/env python
"""Benchmark: ``promptmix filter`` at scale -- rows, seconds, peak RSS, disk -- against the previous implementation.

A counting run folder is written with two annotators (``RUN/images`` + ``RUN/annotations/{a,b}``, as
``promptmix generate`` / ``annotate`` lay them out), then ``filter_run`` runs in a fresh subprocess per
measurement (threads pinned to one), which reports its own seconds (the filter call, imports excluded) and
peak RSS (``VmHWM`` of ``/proc/self/status``, the whole process; ``ru_maxrss`` elsewhere). Cases:

- 1k, 10k and 100k rows with 32x32 maps (64x64 images);
- 512 rows with 768x1024 maps (SASNet's full-resolution maps of 768x1024 images, the SHTA/SHTB configs).

Peer: the previous implementation (``--peer-ref``, default ``0a26d6c``, the last commit with nested-list maps,
extracted with ``git archive``; or ``--peer-src DIR``): maps as nested lists, ``to_pylist`` of every row,
``Dataset.from_generator``, ``kept`` a second copy inside ``all``; on the same values written in its layout, at a smaller row count where a full run would take minutes (its per-row time is
the comparison). Ours and the peer alternate; each figure is the median of ``--repeats``.

Goals (issue 15): peak RSS <= 1 GB at any row count with two 768x1024-map annotators; >= 50x faster per row
than the peer; the fake folder on disk <= 1.2x the images plus one copy of each annotator's maps.

    OMP_NUM_THREADS=1 python scripts/bench_filter_scale.py            # every case
    python scripts/bench_filter_scale.py --quick                     # 1k small, 64 big rows
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RSS_GOAL_MB = 1024
SPEED_GOAL = 50.0
DISK_GOAL = 1.2
CHUNK = 64

_CHILD = r"""
import json, resource, sys, time
import datasets, pyarrow.compute, pyarrow.parquet  # imports are not the filter's work: both sides load them first
from promptmix.annotation.filter.filtering import FilterConfig, filter_run
t = time.perf_counter()
filter_run(sys.argv[1], FilterConfig(keep_percent=50, out=sys.argv[2]))
seconds = time.perf_counter() - t
try:  # VmHWM: this process image's own peak (ru_maxrss keeps the forked parent's peak across exec on Linux)
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "rss_mb": hwm / 1024}))
"""


def _env(src: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), HF_HUB_OFFLINE="1", PROMPTMIX_NO_PROGRESS="1",
               HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[v] = "1"
    return env


def _jpegs(size: tuple[int, int], n: int = 8) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    h, w = size
    out = []
    for i in range(n):  # smooth images with some texture: JPEG sizes like photos', not like noise
        base = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
        tex = rng.normal(0, 12, (h // 8 + 1, w // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:h, :w]
        im = np.clip(base * (0.5 + 0.06 * i) + tex, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _maps(shape: tuple[int, int], n: int = 8) -> list[np.ndarray]:
    """Density-like maps: a few hundred Gaussian heads, float16 (most cells near zero, as real maps)."""
    from promptmix.density import density_map

    rng = np.random.default_rng(1)
    h, w = shape
    return [density_map(rng.uniform([0, 0], [w, h], size=(int(rng.integers(50, 300)), 2)), h, w, sigma=4.0)
            .astype(np.float16) for _ in range(n)]


def write_run(run_dir: Path, rows: int, image_size: tuple[int, int], map_shape: tuple[int, int], *,
              layout: str) -> dict:
    """A counting run with ``rows`` generated rows and annotators ``a`` and ``b`` (maps in ``layout``: ``struct``,
    today's, or ``nested``, the previous one). Returns the bytes of the images and of each annotator's chunks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from promptmix import maps, schema as S
    from promptmix.annotation.annotate import runner
    from promptmix.generation.generate.plan import PLAN_FILE, chunk_table
    from promptmix.run_folder import CHUNK_PATTERN, RunFolder
    from promptmix.utils.io import write_json_atomic

    run = RunFolder(run_dir)
    jpegs, base = _jpegs(image_size), _maps(map_shape)
    h, w = image_size
    ann_schema = S.annotation_features("counting").arrow_schema
    if layout == "nested":
        fields = [f if f.name != S.DENSITY else pa.field(S.DENSITY, pa.list_(pa.list_(pa.float16())))
                  for f in ann_schema]
        ann_schema = pa.schema(fields)  # no HF metadata: main reads it with pyarrow
    for name in ("a", "b"):
        write_json_atomic(run.annotator(name) / runner.ANNOTATOR_JSON, {"name": name, "task": "counting",
                                                                       "spec": f"bench:{name}"})
    n_chunks = -(-rows // CHUNK)
    for c in range(n_chunks):
        ids = range(c * CHUNK, min(rows, (c + 1) * CHUNK))
        gen = [{S.ROW_ID: f"p{i // 2:07d}-{i % 2:05d}", S.IMAGE: {"bytes": jpegs[i % len(jpegs)], "path": None},
                S.PROMPT: f"prompt {i // 2}", S.PROMPT_ID: f"p{i // 2:07d}", S.IMAGE_INDEX: i % 2,
                S.SOURCE_IMAGE_ID: None, S.LABEL: None, S.SEED: i, S.WIDTH: w, S.HEIGHT: h, S.JPEG_QUALITY: 90,
                S.MIXING: None, S.CONDITIONING_IMAGE_ID: None} for i in ids]
        run.image_chunks().write(c, chunk_table(gen))
        for a, name in enumerate(("a", "b")):
            ms = [(base[i % len(base)].astype(np.float32) * (1 + 0.1 * a + 0.001 * (i % 97))).astype(np.float16)
                  for i in ids]
            counts = pa.array([float(m.astype(np.float32).sum()) for m in ms], pa.float32())
            dens = maps.map_struct_array(ms) if layout == "struct" else \
                pa.array([m.tolist() for m in ms], pa.list_(pa.list_(pa.float16())))
            table = pa.Table.from_arrays([pa.array([g[S.ROW_ID] for g in gen]), counts, dens,
                                          pa.array([True] * len(gen))], schema=ann_schema)
            if layout == "struct":  # as annotate writes it: zstd, the footer naming the image chunk it labels
                run.annotation_chunks(name).write(c, table, footer=runner.label_footer(run.image_chunks().path(c)))
            else:
                pq.write_table(table, str(run.annotator(name) / CHUNK_PATTERN.format(c)))
    write_json_atomic(run.images / PLAN_FILE, {"num_rows": rows, "num_chunks": n_chunks, "chunk_size": CHUNK,
                                               "task": "counting", "class_names": None})
    image_bytes = sum(len(jpegs[i % len(jpegs)]) for i in range(rows))
    return {"images": image_bytes, **{name: _du(run.annotator(name)) for name in ("a", "b")}}


def _extract(ref: str, dest: Path) -> Path | None:
    """``src/`` of commit ``ref`` of this repository, extracted into ``dest`` (None when git cannot)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True)
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "src"


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _measure(src: Path, run_dir: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(run_dir), str(out)], env=_env(src),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"filter ({src}) failed:\n{proc.stderr[-3000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["disk"] = _du(out)
    return row


def case(tmp: Path, rows: int, image_size, map_shape, *, peer_rows: int | None, peer_src: Path | None,
         repeats: int) -> dict:
    ours_run, peer_run = tmp / f"ours-{rows}", tmp / f"peer-{rows}"
    sizes = write_run(ours_run, rows, image_size, map_shape, layout="struct")
    if peer_rows and peer_src is not None:
        write_run(peer_run, peer_rows, image_size, map_shape, layout="nested")
    ours, peer = [], []
    for _ in range(repeats):  # alternating
        ours.append(_measure(ROOT / "src", ours_run, tmp / "out-ours"))
        if peer_rows and peer_src is not None:
            peer.append(_measure(peer_src, peer_run, tmp / "out-peer"))
    med = {k: statistics.median(r[k] for r in ours) for k in ("seconds", "rss_mb", "disk")}
    result = {"rows": rows, "maps": f"{map_shape[0]}x{map_shape[1]}", "ours": med,
              "inputs_bytes": sizes["images"] + sizes["a"] + sizes["b"]}
    if peer:
        result["peer"] = {k: statistics.median(r[k] for r in peer) for k in ("seconds", "rss_mb")}
        result["peer_rows"] = peer_rows
    shutil.rmtree(ours_run, ignore_errors=True)
    shutil.rmtree(peer_run, ignore_errors=True)
    return result


def report(r: dict) -> list[str]:
    ours = r["ours"]
    lines = [f"filter, {r['rows']} rows, two annotators with {r['maps']} maps:"]
    per_row = ours["seconds"] / r["rows"]
    lines.append(f"  ours: {ours['seconds']:.2f} s ({per_row * 1e3:.3f} ms/row), peak RSS {ours['rss_mb']:.0f} MB")
    if "peer" in r:
        peer_per_row = r["peer"]["seconds"] / r["peer_rows"]
        ratio = peer_per_row / per_row
        lines.append(f"  peer (previous filter, {r['peer_rows']} rows): {r['peer']['seconds']:.2f} s "
                     f"({peer_per_row * 1e3:.3f} ms/row), peak RSS {r['peer']['rss_mb']:.0f} MB")
        if r["maps"] == "768x1024":
            lines.append(f"  speed per row: {ratio:.1f}x (goal >= {SPEED_GOAL:g}x) -> "
                         f"{'met' if ratio >= SPEED_GOAL else 'NOT met'}")
        else:
            lines.append(f"  speed per row: {ratio:.1f}x (no goal: the {SPEED_GOAL:g}x goal is for 768x1024 maps)")
    lines.append(f"  peak RSS: {ours['rss_mb']:.0f} MB (goal <= {RSS_GOAL_MB} MB) -> "
                 f"{'met' if ours['rss_mb'] <= RSS_GOAL_MB else 'NOT met'}")
    disk = ours["disk"] / r["inputs_bytes"]
    lines.append(f"  fake folder: {ours['disk'] / 1e6:.1f} MB = {disk:.2f}x images + one copy of each annotator's "
                 f"maps ({r['inputs_bytes'] / 1e6:.1f} MB) (goal <= {DISK_GOAL}x) -> "
                 f"{'met' if disk <= DISK_GOAL else 'NOT met'}")
    return lines


CASES = [(1000, (64, 64), (32, 32), 1000), (10_000, (64, 64), (32, 32), 1000),
         (100_000, (64, 64), (32, 32), 1000), (512, (768, 1024), (768, 1024), 8)]
QUICK_CASES = [(1000, (64, 64), (32, 32), 1000), (64, (768, 1024), (768, 1024), 8)]


def _rows_for_table(r: dict) -> list[dict]:
    """``scripts/bench.py`` rows of one case."""
    name = f"filter, {r['rows']} rows, two annotators with {r['maps']} maps"
    big = r["maps"] == "768x1024"
    out = []
    if "peer" in r:
        ours_ms, peer_ms = 1e3 * r["ours"]["seconds"] / r["rows"], 1e3 * r["peer"]["seconds"] / r["peer_rows"]
        out.append({"name": f"{name}: time per row vs the previous filter ({r['peer_rows']} rows)", "ours": ours_ms,
                    "baseline": peer_ms, "unit": "ms/row", "ratio": peer_ms / ours_ms,
                    "goal": f">= {SPEED_GOAL:g}x" if big else "(none: the goal is for 768x1024 maps)",
                    **({"ok": peer_ms / ours_ms >= SPEED_GOAL} if big else {})})
    rss = r["ours"]["rss_mb"]
    out.append({"name": f"{name}: peak RSS", "ours": rss, "baseline": r.get("peer", {}).get("rss_mb"), "unit": "MB",
                "ratio": (r["peer"]["rss_mb"] / rss) if "peer" in r else None, "goal": f"<= {RSS_GOAL_MB} MB",
                "ok": rss <= RSS_GOAL_MB})
    disk = r["ours"]["disk"] / r["inputs_bytes"]
    out.append({"name": f"{name}: fake folder / (images + one copy of each annotator's maps)", "ours": disk,
                "baseline": None, "unit": "x", "ratio": None, "goal": f"<= {DISK_GOAL}x", "ok": disk <= DISK_GOAL})
    return out


def run(quick: bool = False) -> list[dict]:
    """For ``scripts/bench.py``."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-filter-") as tmp:
        peer_src = _extract("0a26d6c", Path(tmp) / "peer-src")
        for n, image, shape, peer_rows in (QUICK_CASES if quick else CASES):
            r = case(Path(tmp), n, image, shape, peer_rows=peer_rows, peer_src=peer_src, repeats=2 if quick else 3)
            rows.extend(_rows_for_table(r))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1k small-map rows and 64 big-map rows only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-ref", default="0a26d6c",
                        help="git commit of the previous implementation (its src/ is extracted; empty: no peer)")
    parser.add_argument("--peer-src", default=None, help="src/ folder of the previous implementation instead")
    parser.add_argument("--workdir", default=None, help="where the run folders go (default: a temp folder)")
    args = parser.parse_args()
    cases = QUICK_CASES if args.quick else CASES
    with tempfile.TemporaryDirectory(prefix="bench-filter-", dir=args.workdir) as tmp:
        peer_src = Path(args.peer_src) if args.peer_src else None
        if peer_src is None and args.peer_ref:
            peer_src = _extract(args.peer_ref, Path(tmp) / "peer-src")
        if peer_src is not None and not (peer_src / "promptmix").is_dir():
            print(f"peer source {peer_src} not found: measuring ours only")
            peer_src = None
        for rows, image, shape, peer_rows in cases:
            r = case(Path(tmp), rows, image, shape, peer_rows=peer_rows, peer_src=peer_src, repeats=args.repeats)
            print("\n".join(report(r)), flush=True)


if __name__ == "__main__":
    main()
