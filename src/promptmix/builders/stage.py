"""Stage ``real``: the real dataset, built from a raw download (``promptmix real BUILDER``, section ``real:``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError, InputError
from ..stage import Stage
from .config import BUILDER_SPECS, RealConfig, builder_function, builder_options


class RealStage(Stage):
    name = "real"
    config_class = RealConfig
    summary = "build a real dataset (Hub layout) from a raw download, an image folder or a Hub dataset"
    description = "Build a real dataset folder with splits train/validation/test from its raw download."
    examples = """\
Each builder writes OUT/README.md (YAML configs) and OUT/data/{train,validation,test}-*.parquet, which
`datasets.load_dataset(OUT)` reads back. OUT is built under a temporary name and moved into place at the end.

examples:
  promptmix real shanghaitech --root data/ShanghaiTech --part B --out data/shtb
  promptmix real ucf-qnrf --root data/UCF-QNRF_ECCV18 --out data/ucf-qnrf
  promptmix real panda-crowd --root data/PANDA-Crowd --out data/panda-crowd
  promptmix real nyu-depth-v2 --mat data/nyu_depth_v2_labeled.mat --out data/nyu
  promptmix real imagefolder --root data/caltech101/101_ObjectCategories --out data/caltech101
  promptmix real hub --dataset uoft-cs/cifar100 --image-column img --label-column fine_label --reduced 4000 --out data/c100r
"""
    wired = ("task",)
    run_folder_arg = None
    marker_files = ("README.md",)

    def out(self, config: RealConfig, run) -> Path:
        if config.builder == "folder":
            return Path(config.path)
        if config.out is not None:
            return Path(config.out)
        if run is None:
            raise ConfigError("real.out: expected the folder the built dataset goes to (--out DIR)")
        return run.real

    def outputs(self, config: RealConfig, run):
        return () if config.builder == "folder" else (self.out(config, run),)

    def external(self, config: RealConfig, run):
        from ..utils.io import files_fingerprint

        paths = list(config.local_inputs())
        if config.builder == "folder" and Path(config.path).exists():
            paths = [Path(config.path)]
        # file hashes cached by stat in the user's cache (utils/statcache.py), from the first call on
        return files_fingerprint(paths) if paths else None

    def settings(self, config: RealConfig) -> dict[str, Any]:
        return {**super().settings(config), "task": config.task}  # the task is set by the pipeline, and keyed

    def run(self, config: RealConfig, run) -> dict[str, Any]:
        from ..builders import load_real, task_of

        if config.builder == "folder":  # a dataset built before, used as it is
            ds = load_real(config.path, revision=config.revision)
            record = {"out": str(config.path), "rows": {split: len(d) for split, d in ds.items()}, "task": task_of(ds)}
        else:
            spec = BUILDER_SPECS[config.builder]
            out = self.out(config, run)
            kwargs = {k: getattr(config, k) for k in (*spec.keys, *spec.optional)}
            report = builder_function(config.builder)(out=out, skip_bad=config.skip_bad, **kwargs, **config.options)
            record = {"out": str(out), "rows": dict(report.rows), "task": report.task, "skipped": len(report.skipped),
                      "class_names": report.class_names, "summary": report.summary()}
        if config.task is not None and record["task"] != config.task:
            where = f"real.path: {config.path} is" if config.builder == "folder" else \
                f"real: the {config.builder} builder made"
            raise InputError(f"{where} a {record['task']} dataset but the config's task is {config.task}")
        return record

    def summary_lines(self, record: Mapping[str, Any]) -> list[str]:
        return [record["summary"]] if "summary" in record else [f"{record['out']}: {record['rows']}"]

    # -- command line: one subcommand per builder -------------------------------------------------------------
    def build_parser(self, parser: argparse.ArgumentParser) -> None:
        from ..cli_args import add_config_arguments, flag_name

        sub = parser.add_subparsers(dest="builder", metavar="BUILDER")
        parser.set_defaults(real_parser=parser)
        for builder, spec in BUILDER_SPECS.items():
            p = sub.add_parser(builder, help=spec.help, description=f"Build {spec.help}.", epilog=spec.details,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
            keep = {*spec.keys, *spec.optional, "skip_bad"}
            add_config_arguments(p, RealConfig, skip=[f for f in RealConfig.__dataclass_fields__
                                                      if f not in keep])
            p.add_argument("--out", type=Path, required=True, help="output folder (replaced if it is a dataset folder)")
            for option in builder_options(builder).values():
                kind = option.type or type(option.default)
                p.add_argument(flag_name(option.name), dest=f"option__{option.name}", type=kind, nargs=option.nargs,
                               choices=option.choices, default=argparse.SUPPRESS,
                               metavar=None if option.choices else (option.metavar or option.name.upper()),
                               help=f"{option.help or option.name} (default: {option.default})".replace("%", "%%"))
            for key in spec.keys:  # required on the command line
                for action in p._actions:
                    if action.dest == key:
                        action.required = True

    def config_from_cli(self, args: argparse.Namespace) -> RealConfig | None:
        from ..cli_args import config_from_args

        if getattr(args, "builder", None) is None:
            args.real_parser.print_help()
            return None
        options = {k.split("__", 1)[1]: v for k, v in vars(args).items() if k.startswith("option__")}
        return config_from_args(RealConfig, args, section="real",
                                overrides={"builder": args.builder, "out": args.out, "options": options})
