"""Stage ``annotate``: every annotator over the generated images (``promptmix annotate``, section ``annotate:``)."""

from __future__ import annotations

from typing import Any, Mapping

from ...stage import Stage
from .config import AnnotateConfig


class AnnotateStage(Stage):
    name = "annotate"
    config_class = AnnotateConfig
    inputs = ("generate",)
    summary = "label a run's generated images with one or more annotator networks"
    description = "Run every annotator over RUN/images and write RUN/annotations/<name>/ (resumable)."
    examples = """\
SPEC forms:
  FOLDER_OR_HUB_ID        a counting folder (config.json with "architecture": csrnet|dmcount|sasnet
                          + model.safetensors), or a transformers depth-estimation, image-classification
                          or CLIP model (CLIP scores the class names zero-shot)
  ARCH=CHECKPOINT_FILE    an author's raw checkpoint: ARCH one of csrnet, dmcount, sasnet
                          (loaded with torch.load(weights_only=True), or a .safetensors file)
  clip-zeroshot=ID_OR_PATH
  NAME:SPEC               set the annotator's name (its folder RUN/annotations/NAME); names must be
                          unique in a run. Default: ARCH for ARCH=FILE, the folder / repo name otherwise.

examples:
  promptmix annotate run --annotator csrnet=CSRNet_B.pth.tar --annotator dmcount=model_qnrf.pth
  promptmix annotate run --annotator shta:sasnet=SHHA.pth --annotator shtb:sasnet=SHHB.pth
  promptmix annotate run --annotator Intel/dpt-large --annotator LiheYoung/depth-anything-small-hf
  promptmix annotate run --annotator my-org/resnet-cats --annotator clip-zeroshot=openai/clip-vit-base-patch32

Rerun the same command to resume: finished chunks are skipped. Under `accelerate launch` chunk c is
annotated by rank c % world_size.
"""
    run_folder_help = "run folder (holds images/ from `promptmix generate`)"
    marker_files = ("*/annotator.json",)

    def outputs(self, config, run):
        return (run.annotations,)

    def verify_outputs(self, config, run) -> list[str]:
        """Every annotator's chunk of every image chunk opens, holds its rows and labels that image chunk as it is
        now (:func:`~promptmix.annotation.annotate.runner.label_problem`)."""
        from ...errors import InputError
        from ...generation.generate.plan import generated_row_ids
        from ...utils.hashing import sha256_file
        from ..annotators.registry import default_name, parse_spec
        from .runner import label_problem

        try:
            ids = generated_row_ids(run)
        except InputError as exc:
            return [str(exc)]
        images = run.image_chunks()
        sha = {c: sha256_file(images.path(c)) for c in ids}
        out = []
        for spec in config.annotators:
            store = run.annotation_chunks(default_name(parse_spec(spec)))
            for c, rows in ids.items():
                why = label_problem(store, c, rows, sha[c], images.path(c))
                if why is not None:
                    out.append(f"{store.path(c)} {why}")
        return out

    def preflight(self, config: AnnotateConfig, run):
        from ...preflight import check_annotator

        return [p for i, spec in enumerate(config.annotators)
                for p in check_annotator(spec, config.revision, subject=f"annotate.annotators[{i}]")]

    def output_fingerprint(self, config, run):
        """Which annotators wrote RUN/annotations, with which weights, and whether each is complete (its record
        also keeps run-time settings, such as the batch size, that change no output)."""
        from ...utils.hashing import stable_hash

        record = self.output_record(config, run) or {}
        annotators = [(a.get("name"), a.get("spec"), a.get("weights_sha256"), a.get("complete"))
                      for a in record.get("annotators", []) if isinstance(a, dict)]
        return stable_hash({"stage": self.name, "annotators": annotators}) if annotators else None

    def describe_output_change(self, config, run):
        record = self.output_record(config, run) or {}
        there = [a.get("spec") for a in record.get("annotators", []) if isinstance(a, dict)]
        return f"annotators: {there} there, {list(config.annotators)} in the config" if there != list(
            config.annotators) else "its annotators were rerun"

    def run(self, config: AnnotateConfig, run) -> dict[str, Any]:
        from .runner import annotate_run

        report = annotate_run(run, config.annotators, batch_size=config.batch_size, device=config.device,
                              dtype=config.dtype, revision=config.revision)
        record = {"annotators": [a.name for a in report.annotators],
                  "rows": {a.name: a.rows for a in report.annotators}, "summary": report.summary()}
        if config.evaluate_split:
            from accelerate import PartialState

            from ..evaluate import evaluate_on_real

            if PartialState().is_main_process:
                record["real_eval"] = evaluate_on_real(run, config.annotators, config.evaluate_split,
                                                       batch_size=config.batch_size, device=config.device,
                                                       dtype=config.dtype, revision=config.revision)
        return record

    def summary_lines(self, record: Mapping[str, Any]) -> list[str]:
        from ..evaluate import eval_lines

        extra = eval_lines({"annotators": record["real_eval"]}) if record.get("real_eval") else []
        return [record["summary"], *extra]
