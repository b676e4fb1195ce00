#!/usr/bin/env python
"""Run every benchmark of the project in one process and print one table.

Each ``scripts/bench_*.py`` exposes ``run(quick: bool) -> list[dict]``; each dict is one comparison
of two implementations measured side by side in this process::

    {"name": "density maps, 64 images", "ours": 0.012, "baseline": 0.31, "unit": "s",
     "ratio": 25.8, "goal": ">= 10x faster"}

``ratio`` is how many times better ours is (baseline / ours for times; the module computes it
when "better" means something else) and ``goal`` says what ratio the project aims for.
A module may add ``"ok": bool`` (goal met) and ``"note"``. Example::

    python scripts/bench.py            # full sizes
    python scripts/bench.py --quick    # small sizes, a minute or two on a laptop
    python scripts/bench.py --only density --json bench.json

Threads are pinned (``--threads``, default 1) for every module: torch and the BLAS/OpenMP pools
get the same thread count for ours and the peer, so a ratio does not depend on the machine's cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ("name", "ours", "baseline", "ratio", "goal")


def discover(folder: Path = HERE) -> list[Path]:
    """The benchmark modules: ``scripts/bench_*.py``, in name order."""
    return sorted(p for p in folder.glob("bench_*.py") if p.is_file())


def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"promptmix_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()


def rows_of(path: Path, quick: bool) -> list[dict]:
    """Run one module; a failure becomes one row that says so (the other benchmarks still run)."""
    t0 = time.perf_counter()
    try:
        module = load(path)
        if not callable(getattr(module, "run", None)):
            raise TypeError(f"{path.name} has no run(quick) function")
        rows = list(module.run(quick=quick))
        for row in rows:
            missing = [k for k in ("name", "ours", "baseline") if k not in row]
            if missing:
                raise ValueError(f"{path.name}: a row lacks {', '.join(missing)}: {row!r}")
            row.setdefault("module", path.stem)
            if row.get("ratio") is None and isinstance(row.get("ours"), (int, float)) and row["ours"]:
                if isinstance(row.get("baseline"), (int, float)):
                    row["ratio"] = row["baseline"] / row["ours"]
        return rows
    except Exception as exc:  # one broken benchmark must not hide the others
        return [{"module": path.stem, "name": path.stem, "ours": None, "baseline": None, "ratio": None,
                 "goal": "", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                 "seconds": time.perf_counter() - t0}]


_GOAL = re.compile(r"^>=\s*(?P<n>[0-9.]+)\s*(?P<unit>x|%)")


def goal_met(row: dict) -> bool | None:
    """Whether a ``>= N x`` / ``>= N %`` goal is met, when the module did not say (None: unknown)."""
    if "ok" in row:
        return row["ok"]
    m = _GOAL.match(str(row.get("goal", "")).strip())
    if not m:
        return None
    value = row.get("ratio") if m["unit"] == "x" else row.get("ours")
    return None if value is None else float(value) >= float(m["n"])


def table(rows: list[dict]) -> str:
    """A plain-text table: name, ours, theirs/baseline, ratio, goal (and whether the goal is met)."""
    head = ["benchmark", "ours", "theirs / baseline", "ratio", "goal", "met"]
    body = []
    for r in rows:
        unit = r.get("unit", "")
        if r.get("error"):
            body.append([r["name"], "ERROR", "-", "-", r.get("goal", ""), r["error"][:60]])
            continue
        ratio = r.get("ratio")
        met = {True: "yes", False: "NO"}.get(goal_met(r), "")
        body.append([str(r["name"]), _fmt(r["ours"], unit), _fmt(r["baseline"], unit),
                     "-" if ratio is None else f"{ratio:.2f}x", str(r.get("goal", "")), met])
    widths = [max(len(head[i]), *(len(b[i]) for b in body)) if body else len(head[i]) for i in range(len(head))]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    lines = [fmt(head), fmt(["-" * w for w in widths])]
    lines += [fmt(b) for b in body]
    return "\n".join(lines)


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
               "NUMEXPR_NUM_THREADS")


def pin_threads(n: int = 1) -> str:
    """Pin torch's and the BLAS/OpenMP pools' threads to ``n`` before any benchmark imports numpy or torch.

    A benchmark that needs another setting for one line (``bench_density``'s default-threads line)
    sets it around that line and restores it.
    """
    import os

    for var in THREAD_VARS:
        os.environ[var] = str(n)
    pinned = [f"{v}={n}" for v in THREAD_VARS]
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(n)
        pinned.append(f"torch.set_num_threads({n})")
    return "threads pinned: " + ", ".join(pinned)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (CI, laptops)")
    parser.add_argument("--only", action="append", default=[], metavar="WORD",
                        help="run only modules whose file name contains WORD (repeatable)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="threads for torch and the BLAS/OpenMP pools of every benchmark (default 1: the "
                             "same for ours and the peer, whatever the machine)")
    parser.add_argument("--json", type=Path, help="also write every row (with errors) to this JSON file")
    args = parser.parse_args(argv)

    import os

    os.environ.setdefault("PROMPTMIX_NO_PROGRESS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(pin_threads(args.threads), file=sys.stderr, flush=True)
    modules = [p for p in discover() if not args.only or any(w in p.stem for w in args.only)]
    if not modules:
        print(f"no benchmark modules matched in {HERE} (expected scripts/bench_*.py)", file=sys.stderr)
        return 2
    rows: list[dict] = []
    t0 = time.perf_counter()
    for path in modules:
        print(f"running {path.name} ...", file=sys.stderr, flush=True)
        rows.extend(rows_of(path, args.quick))
    for module in dict.fromkeys(r["module"] for r in rows if r.get("output")):
        output = next(r["output"] for r in rows if r["module"] == module and r.get("output"))
        print(f"--- {module} (printed) ---\n{output.rstrip()}\n")
    print(table(rows))
    print(f"\n{len(modules)} modules, {time.perf_counter() - t0:.1f} s{' (--quick)' if args.quick else ''}")
    for r in rows:
        if r.get("error"):
            print(f"\n{r['module']} failed:\n{r['traceback']}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
