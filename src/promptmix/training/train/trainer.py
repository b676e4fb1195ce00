"""The training loop: one Accelerate run per learning rate, best-validation checkpoint, test at the end.

The PromptMix recipe (Section IV-A): AdamW with weight decay 1e-4, the learning rate multiplied by
0.99 after every epoch, the learning rate picked from a grid ({1e-3, 1e-4, 1e-5, 1e-6}) by the
validation split, and the checkpoint with the best validation metric evaluated on the test split.

Output folder::

    OUTPUT/
      config.yaml             the final TrainConfig
      metrics.json            validation/* and test/* of the chosen run, chosen_lr, lr_search, history
      manifest.json           config, library versions (stage train; promptmix.run_folder)
      lr-0.0001/              one folder per learning rate tried
        result.json           best validation metrics, best epoch, per-epoch history (the run is done)
        best/model.safetensors, best/model.json   weights of the best validation epoch
        checkpoints/epoch-NNNN/                   accelerate save_state + trainer_state.json (resume)
      logs/                   tracker logs (tensorboard when installed)

BatchNorm (``bn``, :mod:`promptmix.models.norm`): ``auto`` freezes it (running statistics, trained scale and
shift) when each process's batch holds one image, where normalising each image alone breaks training.

Resuming (``resume``) continues each learning rate's run from its newest ``checkpoints/epoch-*``: after an
interruption, or to train it longer (``epochs`` or ``two_phase_epochs`` raised; the learning rate keeps
decaying x0.99 per epoch from where it was), then picks the best validation epoch and tests again.

Distributed runs (``accelerate launch``, ``torchrun``): each process takes every N-th batch of the
epoch (:func:`~promptmix.training.mixing.shard_batches`); evaluation shards the split and gathers
per-image predictions with ``gather_for_metrics``, so the metrics equal a single-process run's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ...errors import CheckpointError, InputError, TrainingError
from ...models import create_model
from ...tasks import Task, get_task
from ...utils.checkpoints import save_checkpoint
from ...utils.io import atomic_path, write_json_atomic, write_text_atomic
from ...utils.progress import progress
from ..metrics import load_metric
from .config import TrainConfig
from .data import EvalSet, SampleSettings, TrainingData, TrainSet, collate, load_training_data, normalize
from .mixing import MixingSpec, composition, epoch_batches, shard_batches
from ...models.norm import apply_bn_mode, has_batchnorm

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
RESULT_FILE = "result.json"
STATE_FILE = "trainer_state.json"
BEST_DIR = "best"
WEIGHTS_FILE = "model.safetensors"


def run_dir_name(lr: float) -> str:
    return f"lr-{lr:g}"


@dataclasses.dataclass
class TrainerState:
    """What a resumed run needs besides accelerate's state: progress and the best validation so far."""

    epoch: int = 0  # epochs completed
    steps: int = 0  # optimizer steps taken
    best: float | None = None
    best_epoch: int | None = None
    best_validation: dict = dataclasses.field(default_factory=dict)
    history: list = dataclasses.field(default_factory=list)


class LrSchedule:
    """The learning-rate factor of each epoch (the trainer sets lr x factor at the start of every epoch).

    ``exponential`` (PromptMix): ``lr_decay ** epoch``, times ``two_phase_lr_factor`` in the real-only phase.
    ``cosine``: ``(1 + cos(pi * epoch / epochs)) / 2`` over the phase-1 epochs. ``multistep``: ``gamma`` to the
    number of milestones passed (default milestones: half and three quarters of the phase-1 epochs). With
    ``cosine`` and ``multistep`` the real-only phase of two-phase mixing trains at ``two_phase_lr_factor`` times
    the initial rate (a cosine would have reached 0 there).
    """

    def __init__(self, decay: float, spec: MixingSpec, kind: str = "exponential", milestones: tuple = (),
                 gamma: float = 0.1) -> None:
        self.decay = float(decay)
        self.phase1_epochs = int(spec.epochs)
        self.phase2_factor = float(spec.two_phase_lr_factor) if spec.strategy == "two-phase" else 1.0
        self.kind = kind
        self.gamma = float(gamma)
        e = max(1, self.phase1_epochs)
        self.milestones = tuple(int(m) for m in milestones) or (max(1, e // 2), max(1, (3 * e) // 4))

    def __call__(self, epoch: int) -> float:
        phase2 = epoch >= self.phase1_epochs
        factor = self.phase2_factor if phase2 else 1.0
        if self.kind == "cosine":
            return factor if phase2 else 0.5 * (1.0 + math.cos(math.pi * epoch / max(1, self.phase1_epochs)))
        if self.kind == "multistep":
            return factor if phase2 else self.gamma ** sum(1 for m in self.milestones if epoch >= m)
        return (self.decay ** epoch) * factor


def lr_schedule(config: TrainConfig, spec: MixingSpec) -> LrSchedule:
    return LrSchedule(config.lr_decay, spec, config.lr_schedule, config.lr_milestones, config.lr_gamma)


def make_optimizer(params, config: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """The recipe's optimiser: AdamW (decoupled weight decay), Adam or SGD (L2 weight decay)."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)


# -- setup -------------------------------------------------------------------------------------------------
def _trackers(report_to: str) -> list[str] | None:
    if report_to == "none":
        return None
    if report_to == "auto":
        import importlib.util

        found = [name for name, mod in (("tensorboard", "tensorboard"), ("tensorboard", "tensorboardX"))
                 if importlib.util.find_spec(mod) is not None]
        return found[:1] or None
    return [report_to]


def make_accelerator(config: TrainConfig):
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    precision: str | None = config.mixed_precision
    if precision == "auto":
        if os.environ.get("ACCELERATE_MIXED_PRECISION"):
            precision = None  # as given to `accelerate launch`
        elif torch.cuda.is_available() and not config.cpu:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "no"
    project = ProjectConfiguration(project_dir=str(config.output_path), logging_dir=str(config.output_path / "logs"))
    return Accelerator(cpu=config.cpu, mixed_precision=precision, log_with=_trackers(config.report_to),
                       project_config=project)


def _check_output_dir(accelerator, config: TrainConfig) -> None:
    out = config.output_path
    previous = [p for p in (out / METRICS_FILE, *out.glob("lr-*")) if p.exists()] if out.exists() else []
    if previous and not (config.resume or config.overwrite):
        raise InputError(f"{out} already holds a training run ({previous[0].name}); pass --resume to continue it, "
                         f"--overwrite to start again, or choose another --output-dir")
    if previous and config.overwrite and not config.resume and accelerator.is_main_process:
        for p in previous:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    accelerator.wait_for_everyone()


def model_kwargs(config: TrainConfig, data: TrainingData) -> dict[str, Any]:
    return {"width_div": config.width_div, **get_task(config.task).model_kwargs(config, data)}


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load a full model's weights from a safetensors file (strict), with a clear error on mismatch."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file() or path.suffix != ".safetensors":
        raise InputError(f"weights {path}: expected an existing .safetensors file (a run's best/model.safetensors)")
    from ...models.checkpoints import ensure_weights_file

    ensure_weights_file(path)  # a Git LFS pointer or an HTML page is named as such
    state = load_file(str(path))
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        what = (f"{len(missing)} missing (first {missing[:1]})" if missing else
                f"{len(unexpected)} unexpected (first {unexpected[:1]})" if unexpected else
                f"shape mismatch for {bad[0]!r}: {tuple(state[bad[0]].shape)} vs {tuple(own[bad[0]].shape)}")
        raise CheckpointError(f"{path}: does not fit model {getattr(model, 'model_name', type(model).__name__)} "
                              f"({what}); check --model and --width-div")
    model.load_state_dict(state)


def _save_best(accelerator, model, run_dir: Path, config: TrainConfig, kwargs: dict, epoch: int) -> None:
    from safetensors.torch import save_file

    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    best = run_dir / BEST_DIR
    best.mkdir(parents=True, exist_ok=True)
    with atomic_path(best / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"model": config.model, "epoch": str(epoch)})
    write_json_atomic(best / "model.json", {"model": config.model, "epoch": epoch, **kwargs})


# -- checkpoints ----------------------------------------------------------------------------------------
def latest_checkpoint(run_dir: Path) -> Path | None:
    root = run_dir / "checkpoints"
    done = sorted(p for p in root.glob("epoch-*") if (p / STATE_FILE).exists()) if root.exists() else []
    return done[-1] if done else None


def _save_checkpoint(accelerator, run_dir: Path, state: TrainerState, keep: int) -> None:
    root = run_dir / "checkpoints"
    save_checkpoint(accelerator, root / f"epoch-{state.epoch:04d}", STATE_FILE, dataclasses.asdict(state))
    if accelerator.is_main_process:
        done = sorted(root.glob("epoch-*"))
        for old in done[:max(0, len(done) - keep)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _load_checkpoint(accelerator, ckpt: Path) -> TrainerState:
    try:
        accelerator.load_state(str(ckpt))
        data = json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
        return TrainerState(**data)
    except Exception as exc:
        raise CheckpointError(f"{ckpt}: could not be loaded to resume ({_first_line(exc)}); delete it or pass "
                              "--overwrite") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _resume_checkpoint(accelerator, run_dir: Path, lr: float) -> tuple[Path | None, TrainerState]:
    """The newest checkpoint of ``run_dir`` that loads, newest first; a broken one (a weights file deleted, a
    truncated optimizer state) is skipped with a warning naming it and why. ``(None, TrainerState())`` when there is
    none; :class:`CheckpointError` when there are some and none loads."""
    root = run_dir / "checkpoints"
    done = sorted((p for p in root.glob("epoch-*") if (p / STATE_FILE).exists()), reverse=True) \
        if root.exists() else []
    for ckpt in done:
        try:
            return ckpt, _load_checkpoint(accelerator, ckpt)
        except CheckpointError as exc:
            logger.warning("lr %g: skipping the broken checkpoint %s (%s); trying the one before it", lr, ckpt, exc)
    if done:  # a failed load may have filled part of the model or optimizer: never train on from that
        raise CheckpointError(f"lr {lr:g}: none of the {len(done)} checkpoint(s) in {root} loads (see the warnings); "
                              "delete them to start this learning rate again, or pass --overwrite")
    return None, TrainerState()


# -- evaluation ---------------------------------------------------------------------------------------------
def eval_loader(accelerator, data: TrainingData, split: str, settings: SampleSettings, config: TrainConfig):
    loader = DataLoader(EvalSet(data.split(split), settings), batch_size=config.eval_batch_size, shuffle=False,
                        collate_fn=collate, num_workers=config.num_workers)
    return accelerator.prepare_data_loader(loader)


def _sync_buffers(accelerator, net: torch.nn.Module) -> None:
    """Batch-norm statistics differ between processes after DDP training; use process 0's everywhere."""
    if accelerator.num_processes > 1 and torch.distributed.is_initialized():
        for buf in net.buffers():
            torch.distributed.broadcast(buf.data, src=0)


def evaluate(accelerator, model, loader, spec: Task, metric, config: TrainConfig, *, desc: str = "eval") -> dict:
    """The metric module's values on one split; every process returns the same numbers."""
    net = accelerator.unwrap_model(model)
    _sync_buffers(accelerator, net)
    was_training = net.training
    net.eval()
    records: list = []
    with torch.no_grad():
        for groups in progress(loader, desc=desc, leave=False):
            batch = []
            for g in groups:
                with accelerator.autocast():
                    out = net(normalize(g["pixel_values"]))
                batch += spec.records(out, g)
            batch.sort(key=lambda r: r[0])
            items = [(idx, pred, ref) for _, idx, pred, ref in batch]
            records += accelerator.gather_for_metrics(items, use_gather_object=True)
    net.train(was_training)
    return spec.compute(metric, records, min_depth=config.min_depth, max_depth=config.max_depth)


# -- one learning rate -----------------------------------------------------------------------------------
def check_finite(values: dict, split: str, where: str) -> None:
    """:class:`TrainingError` when a metric of ``values`` (one split's evaluation) is NaN or infinite."""
    bad = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not math.isfinite(v)}
    if bad:
        shown = ", ".join(f"{split}/{k} {v}" for k, v in bad.items())
        raise TrainingError(f"{where}: {shown}: the network's outputs are not finite numbers (the loss diverged, or "
                            "a training target holds NaN/inf); training stops here rather than report a meaningless "
                            "result. Lower the learning rate (--lr) or check the training data; the checkpoints "
                            "written so far are kept")


def _epoch_loader(train_set: TrainSet, batches, config: TrainConfig, accelerator) -> DataLoader:
    return DataLoader(train_set, batch_sampler=batches, collate_fn=collate, num_workers=config.num_workers,
                      pin_memory=accelerator.device.type == "cuda")


def _train_lr(accelerator, config: TrainConfig, data: TrainingData, spec: Task, metric, lr: float,
              settings: SampleSettings, kwargs: dict) -> dict:
    from accelerate.utils import set_seed

    run_dir = config.output_path / run_dir_name(lr)
    if config.resume and (run_dir / RESULT_FILE).exists():
        done = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))
        if done.get("config_hash") == config.config_hash():
            logger.info("lr %g: already done (%s)", lr, run_dir / RESULT_FILE)
            return done
    set_seed(config.seed)
    model = create_model(config.model, pretrained=config.pretrained, pretrained_revision=config.pretrained_revision,
                         **kwargs)
    if config.weights:
        load_weights(model, config.weights)
    bn_mode = config.bn_mode
    bn_trains = bn_mode == "train" and has_batchnorm(model)
    warned_group = config.batch_size == 1  # train() has warned already
    mix = config.mixing_spec()
    optimizer = make_optimizer(model.parameters(), config, lr)
    # the learning rate is a function of the epoch (this run's schedule, also after a resume): set per epoch
    schedule = lr_schedule(config, mix)
    loss_sum = getattr(model, "loss_sum", None) or spec.loss_sum  # a model with its own loss (GuideDepth)
    model, optimizer = accelerator.prepare(model, optimizer)
    val_loader = eval_loader(accelerator, data, "validation", settings, config)

    ckpt, state = _resume_checkpoint(accelerator, run_dir, lr) if config.resume else (None, TrainerState())
    if ckpt is not None:
        logger.info("lr %g: resuming after epoch %d from %s", lr, state.epoch, ckpt)

    total = mix.total_epochs
    if total == 0:  # evaluation only
        val = evaluate(accelerator, model, val_loader, spec, metric, config, desc="validation")
        check_finite(val, "validation", f"lr {lr:g}, before training")
        state.best, state.best_epoch, state.best_validation = val[spec.primary], 0, val
        _save_best(accelerator, model, run_dir, config, kwargs, 0)

    train_set = TrainSet(data, settings)
    n_real, n_fake = len(data.train), len(data.fake) if data.fake is not None else 0
    swap_labels = data.swap_labels(config.target_annotator) if mix.strategy == "swap" else None
    device = accelerator.device
    for epoch in range(state.epoch, total):
        if config.max_steps is not None and state.steps >= config.max_steps:
            break
        batches = epoch_batches(mix, n_real, n_fake, config.batch_size, epoch=epoch, seed=config.seed,
                                labels=swap_labels)
        counts = composition(batches)
        pos = 0
        keyed = []
        for b in batches:
            keyed.append([(s, r, pos + i) for i, (s, r) in enumerate(b)])
            pos += len(b)
        mine = shard_batches(keyed, accelerator.process_index, accelerator.num_processes)
        train_set.set_epoch(epoch)
        train_set.prefetch(mine)  # a streamed fake set: this epoch's fake rows, in one pass over the stream
        loader = _epoch_loader(train_set, mine, config, accelerator)
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = lr * schedule(epoch)
        apply_bn_mode(model, bn_mode)
        lr_now = optimizer.param_groups[0]["lr"]
        loss_total = torch.zeros((), device=device)
        seen = 0
        stopped = False
        n_batches = len(mine)
        bar = progress(loader, total=n_batches, desc=f"lr {lr:g} epoch {epoch + 1}/{total}", unit="batch")
        for i, groups in enumerate(bar):
            sync = (i + 1) % config.grad_accumulation == 0 or i == n_batches - 1
            batch_n = sum(len(g["position"]) for g in groups)
            if bn_trains and not warned_group and batch_n > 1 and any(len(g["position"]) == 1 for g in groups):
                warned_group = True
                logger.warning("%s: a batch holds an image alone in its size group (images of different sizes run "
                               "separately), so BatchNorm trains on one image there; consider bn: frozen or "
                               "crop_size", config.model)
            for gi, g in enumerate(groups):
                last = sync and gi == len(groups) - 1
                ctx = contextlib.nullcontext() if last else accelerator.no_sync(model)
                with ctx:
                    with accelerator.autocast():
                        out = model(normalize(g["pixel_values"].to(device, non_blocking=True)))
                    loss = loss_sum(out, g["target"].to(device, non_blocking=True))
                    accelerator.backward(loss / (batch_n * config.grad_accumulation))
                loss_total += loss.detach()
            seen += batch_n
            if sync:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                state.steps += 1
                if config.max_steps is not None and state.steps >= config.max_steps:
                    stopped = True
                    break
        totals = accelerator.reduce(torch.stack([loss_total.float(), torch.tensor(float(seen), device=device)]),
                                    reduction="sum")
        train_loss = float(totals[0] / totals[1].clamp_min(1.0))
        entry: dict[str, Any] = {"epoch": epoch + 1, "lr": lr_now, "phase": mix.phase(epoch), "train_loss": train_loss,
                                 "real_rows": counts["real"], "fake_rows": counts["fake"], "steps": state.steps}
        last_epoch = epoch == total - 1 or stopped
        if (epoch + 1) % config.eval_every == 0 or last_epoch:
            val = evaluate(accelerator, model, val_loader, spec, metric, config, desc="validation")
            check_finite(val, "validation", f"lr {lr:g}, epoch {epoch + 1}")
            entry.update({f"validation/{k}": v for k, v in val.items()})
            if spec.better(val[spec.primary], state.best):
                state.best, state.best_epoch, state.best_validation = val[spec.primary], epoch + 1, val
                _save_best(accelerator, model, run_dir, config, kwargs, epoch + 1)
        state.history.append(entry)
        state.epoch = epoch + 1
        accelerator.log({f"lr={lr:g}/{k}": v for k, v in entry.items() if isinstance(v, (int, float))}, step=epoch + 1)
        if (epoch + 1) % config.save_every == 0 or last_epoch:
            _save_checkpoint(accelerator, run_dir, state, config.keep_checkpoints)
        if stopped:
            break
    result = {"lr": lr, "best_epoch": state.best_epoch, "validation": state.best_validation,
              "history": state.history, "steps": state.steps, "config_hash": config.config_hash()}
    if accelerator.is_main_process:
        write_json_atomic(run_dir / RESULT_FILE, result)
    accelerator.wait_for_everyone()
    accelerator.free_memory()
    return result


# -- the whole run -------------------------------------------------------------------------------------------
def _hparams(config: TrainConfig) -> dict[str, Any]:
    out = {}
    for k, v in config.to_dict().items():
        out[k] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def train(config: TrainConfig, data: TrainingData | None = None) -> dict[str, Any]:
    """Train ``config`` (every learning rate of the grid), pick the best by validation, test it.

    Returns the contents of ``OUTPUT/metrics.json``. ``data`` replaces loading the datasets the config
    names (prompt filtering passes a fake set restricted to one prompt).
    """
    from ...run_folder import RunFolder

    out = config.output_path
    _guard_output_dir(config)
    accelerator = make_accelerator(config)
    with contextlib.ExitStack() as stack:
        if accelerator.is_main_process:
            stack.enter_context(RunFolder(out).lock("train"))
        return _train(config, data, accelerator)


def _guard_output_dir(config: TrainConfig) -> None:
    """--output-dir is never a dataset it reads (nor inside or around one); a non-empty folder that is not a
    training run (no config.yaml) is refused unless --overwrite."""
    from ...utils.model_source import is_local_ref
    from ...utils.outputs import guard_output

    inputs = [p for p in (config.real, config.fake, config.weights) if p and is_local_ref(str(p))]
    guard_output(config.output_path, "train", inputs=inputs, force=config.overwrite, flag="--output-dir",
                 force_flag="--overwrite", ours=lambda folder: (folder / "config.yaml").is_file())


def _train(config: TrainConfig, data: TrainingData | None, accelerator) -> dict[str, Any]:
    from ...run_folder import RunFolder
    from ...utils.outputs import write_marker

    out = config.output_path
    _check_output_dir(accelerator, config)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_marker(out, "train")
        write_text_atomic(out / "config.yaml", config.to_yaml())
    spec = get_task(config.task)
    with accelerator.main_process_first():
        if data is None:
            data = load_training_data(config)
        metric = load_metric(spec.metric)
    if config.mixing != "none" and data.fake is None:
        raise InputError(f"mixing {config.mixing!r} needs fake rows; none were loaded (--fake {config.fake!r})")
    kwargs = model_kwargs(config, data)
    with torch.device("meta"):
        probe = create_model(config.model, **kwargs)
    settings = SampleSettings.from_config(config, getattr(probe, "output_stride", None),
                                          getattr(probe, "output_rounding", None))
    if config.bn_mode == "train" and config.batch_size == 1 and has_batchnorm(probe):
        logger.warning("%s: BatchNorm trains at batch size 1 (bn: train): each image is normalised by its own "
                       "statistics, so the network evaluated (running statistics) is not the one optimised; "
                       "use bn: frozen (what bn: auto picks at batch size 1)", config.model)
    accelerator.init_trackers("promptmix-training", config=_hparams(config))

    trained = config.mixing_spec().total_epochs > 0
    lrs = config.learning_rates() if trained else config.learning_rates()[:1]  # --epochs 0: evaluate only
    runs = [_train_lr(accelerator, config, data, spec, metric, lr, settings, kwargs) for lr in lrs]
    best = runs[0]
    for r in runs[1:]:
        if r["validation"] and spec.better(r["validation"][spec.primary], best["validation"].get(spec.primary)):
            best = r

    weights = out / run_dir_name(best["lr"]) / BEST_DIR / WEIGHTS_FILE
    model = create_model(config.model, **kwargs)
    load_weights(model, weights)
    model.to(accelerator.device)
    test_loader = eval_loader(accelerator, data, "test", settings, config)
    test = evaluate(accelerator, model, test_loader, spec, metric, config, desc="test")
    check_finite(test, "test", f"the best run (lr {best['lr']:g}, epoch {best['best_epoch']})")

    metrics: dict[str, Any] = {
        "task": config.task, "model": config.model, "mixing": config.mixing, "r_mix": config.r_mix,
        "real": config.real, "fake": config.fake, "fake_revision": config.fake_revision, "seed": config.seed,
        "primary_metric": spec.primary, "greater_is_better": spec.greater_is_better,
        "chosen_lr": best["lr"] if trained else None, "best_epoch": best["best_epoch"],
        "num_processes": accelerator.num_processes, "weights": str(weights),
        **{f"validation/{k}": v for k, v in best["validation"].items()},
        **{f"test/{k}": v for k, v in test.items()},
        "lr_search": [{"lr": r["lr"], "best_epoch": r["best_epoch"],
                       **{f"validation/{k}": v for k, v in (r["validation"] or {}).items()}} for r in runs],
        "history": best["history"],
    }
    if accelerator.is_main_process:
        write_json_atomic(out / METRICS_FILE, metrics)
        RunFolder(out).record_stage("train", {"config": config.to_dict(), "config_hash": config.config_hash(),
                                              "metrics": {k: v for k, v in metrics.items() if "/" in k}})
    accelerator.log({f"test/{k}": v for k, v in test.items() if isinstance(v, (int, float))})
    accelerator.end_training()
    accelerator.free_memory()
    return metrics
