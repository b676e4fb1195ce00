"""The shape of the code base: no import cycle, a light command line, one place for the run folder's layout."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "promptmix"
HEAVY = ("torch", "diffusers", "transformers", "datasets")


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (path, package)
    return out


def _import_graph() -> dict[str, set[str]]:
    """Every ``import`` of a promptmix module by a promptmix module, at module level or inside functions."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, package) in modules.items():
        base = name.split(".") if package else name.split(".")[:-1]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parent = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    target = ".".join(parent + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    edges.add(full if full in modules else target)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    graph = _import_graph()
    assert len(graph) > 50  # the graph really covers the package
    assert "promptmix.run_folder" in graph["promptmix.generation.generate.runner"]
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


_RUN_DIRS = {"captions", "prompts", "finetune", "images", "annotations", "fake", "publish", "real", "train",
             "report", "pipeline", "manifest.json"}


def test_run_folder_sub_paths_live_in_the_run_folder_module_only():
    """``run_dir / "images"`` and the like appear nowhere but in promptmix.run_folder."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "run_folder.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)):
                continue
            left, right = node.left, node.right
            name = left.id if isinstance(left, ast.Name) else left.attr if isinstance(left, ast.Attribute) else ""
            if ("run" in name.lower() and isinstance(right, ast.Constant) and isinstance(right.value, str)
                    and right.value.split("/")[0] in _RUN_DIRS):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: {name} / {right.value!r}")
    assert offenders == []


@pytest.mark.parametrize("argv", [["--help"], ["annotate", "--help"], ["generate", "--help"], ["run", "--help"],
                                  ["filter", "RUN", "--no-such-flag"], ["real", "shanghaitech", "--help"]])
def test_parsing_and_help_import_no_heavy_library(argv):
    code = ("import sys, json\nfrom promptmix.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
            "    pass\nprint(json.dumps([m for m in %r if m in sys.modules]))" % (HEAVY,))
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_every_command_builds_its_parser_without_heavy_libraries():
    code = ("import sys, json\nfrom promptmix.cli import COMMANDS, build_parser\n"
            "for name in COMMANDS:\n    build_parser(name)\n"
            "print(json.dumps([m for m in %r if m in sys.modules]))" % (HEAVY,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], out.stderr[-2000:]


def test_every_stage_is_a_command_named_like_it_with_its_config_flags():
    from promptmix.cli import COMMANDS, build_parser
    from promptmix.stage import STAGES, get_stage

    parser = build_parser()
    subparsers = next(a for a in parser._actions if getattr(a, "choices", None) and "run" in a.choices).choices
    for name in STAGES:
        stage = get_stage(name)
        assert stage.name == name and stage.config_class.__module__.endswith(".config")
        if name in ("finetune", "train"):  # accelerate entry scripts in training/
            continue
        assert COMMANDS[name] == f"stage:{name}"
    flags = {s for a in subparsers["filter"]._actions for s in a.option_strings}
    assert {"--keep-percent", "--keep", "--target", "--out", "--annotators", "--config"} <= flags


def test_builder_options_match_their_functions():
    import inspect

    from promptmix.builders.config import _TAKEN, BUILDER_SPECS, builder_function

    for name, spec in BUILDER_SPECS.items():
        params = inspect.signature(builder_function(name)).parameters
        wanted = {n: p.default for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in _TAKEN}
        assert {o.name: o.default for o in spec.options} == wanted, name
