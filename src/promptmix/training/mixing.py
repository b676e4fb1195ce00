"""How real and fake rows are mixed into each training epoch.

Every strategy turns ``(number of real rows, number of fake rows, epoch, seed)`` into the epoch's
list of batches of ``(source, row)`` keys (``source`` is :data:`REAL` or :data:`FAKE`); the same
arguments always give the same batches (NumPy generators seeded with ``(seed, epoch, stream)``),
so a resumed run, or every process of a distributed run, sees the same epoch. Strategies:

``none``
    The real-only baseline: every real row once per epoch, shuffled.
``promptmix``
    PromptMix (Section III, fifth stage): ``D_epoch^t = D_real U D_sample^t`` where ``D_sample^t`` is
    a fresh uniform sample of exactly ``r_mix`` distinct fake rows drawn at every epoch ``t``
    (r_mix = 500 for crowd counting, 1,000 for NYU depth in Section IV-A).
``interleave``
    ``datasets.interleave_datasets([real, fake], probabilities=[1 - p, p], seed=...)`` over the
    shuffled real and fake rows: each next row is fake with probability ``p``; the epoch ends when
    one source runs out (``first_exhausted``) or when both have (``all_exhausted``). The same call
    works on streaming ``IterableDataset`` s.
``two-phase``
    MVC (Mixing Visual Concepts, Table 5, "two-phase training"): phase 1 trains on real + fake rows
    (every fake row, "combined"; or ``r_mix`` fresh fake rows per epoch when ``r_mix`` is set) for
    ``epochs`` epochs; phase 2 fine-tunes on real rows only for ``two_phase_epochs`` epochs with the
    learning rate multiplied by ``two_phase_lr_factor`` (smaller and shorter, to keep what the fake
    data taught).
``rsp``
    MVC "random selection with probability": batches of real rows, and each real row brings one
    fake row into its batch with probability ``p`` (MVC uses 80 %). Fake rows come from a shuffled
    pass over the fake set, reshuffled when it runs out, so batches hold ``B`` real rows and
    Binomial(``B``, ``p``) fake rows.
``fake-only``
    Fake rows only: every fake row per epoch (or ``r_mix`` fresh ones when ``r_mix`` is set).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from ..errors import ConfigError, InputError

STRATEGIES = ("none", "promptmix", "interleave", "two-phase", "rsp", "fake-only")
REAL, FAKE = 0, 1
STOPPING_STRATEGIES = ("first_exhausted", "all_exhausted")
Key = tuple[int, int]  # (source, row)

_STREAM_REAL, _STREAM_FAKE, _STREAM_ORDER, _STREAM_RSP = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class MixingSpec:
    """The settings a strategy needs (a slice of the training config)."""

    strategy: str = "none"
    r_mix: int | None = None
    interleave_probability: float = 0.5
    interleave_stopping: str = "first_exhausted"
    rsp_probability: float = 0.8
    epochs: int = 1  # phase 1 for two-phase
    two_phase_epochs: int = 0
    two_phase_lr_factor: float = 0.1

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"mixing: expected one of {', '.join(STRATEGIES)}; got {self.strategy!r}")
        if self.strategy == "promptmix" and self.r_mix is None:
            raise ConfigError("r_mix: mixing 'promptmix' needs the number of fake rows per epoch (--r-mix; "
                              "the paper uses 500 for crowd counting and 1000 for depth); got None")
        if self.r_mix is not None and self.r_mix < 0:
            raise ConfigError(f"r_mix: expected a non-negative integer; got {self.r_mix!r}")
        for name in ("interleave_probability", "rsp_probability"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"{name}: expected a probability in [0, 1]; got {p!r}")
        if self.interleave_stopping not in STOPPING_STRATEGIES:
            raise ConfigError(f"interleave_stopping: expected one of {STOPPING_STRATEGIES}; "
                              f"got {self.interleave_stopping!r}")

    @property
    def uses_fake(self) -> bool:
        return self.strategy != "none"

    @property
    def total_epochs(self) -> int:
        return self.epochs + (self.two_phase_epochs if self.strategy == "two-phase" else 0)

    def phase(self, epoch: int) -> str:
        if self.strategy == "two-phase" and epoch >= self.epochs:
            return "real-finetune"
        return "main"

    def lr_factor(self, epoch: int) -> float:
        """Multiplier of the (decayed) learning rate at ``epoch``: ``two_phase_lr_factor`` in phase 2."""
        return self.two_phase_lr_factor if self.phase(epoch) == "real-finetune" else 1.0


def epoch_rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    """The generator of one random stream of one epoch (independent of every other)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(stream)])


def sample_fake_rows(n_fake: int, r_mix: int, *, seed: int, epoch: int) -> np.ndarray:
    """Exactly ``r_mix`` distinct fake rows, uniformly drawn for ``epoch`` (PromptMix's ``D_sample^t``)."""
    if r_mix > n_fake:
        raise InputError(f"r_mix: {r_mix} fake rows per epoch were asked for but the fake dataset has only "
                         f"{n_fake} rows; lower --r-mix or use a larger fake dataset")
    return np.sort(epoch_rng(seed, epoch, _STREAM_FAKE).choice(n_fake, size=r_mix, replace=False))


def _shuffle(keys: list[Key], seed: int, epoch: int) -> list[Key]:
    order = epoch_rng(seed, epoch, _STREAM_ORDER).permutation(len(keys))
    return [keys[i] for i in order]


def _real(n_real: int) -> list[Key]:
    return [(REAL, i) for i in range(n_real)]


def _fake_rows(spec: MixingSpec, n_fake: int, seed: int, epoch: int) -> list[Key]:
    rows = range(n_fake) if spec.r_mix is None else sample_fake_rows(n_fake, spec.r_mix, seed=seed, epoch=epoch)
    return [(FAKE, int(i)) for i in rows]


def interleave_keys(n_real: int, n_fake: int, probability: float, *, seed: int, epoch: int,
                    stopping_strategy: str = "first_exhausted") -> list[Key]:
    """The ``interleave`` epoch: ``datasets.interleave_datasets`` of the shuffled real and fake rows."""
    from datasets import Dataset, interleave_datasets

    if n_real == 0 or n_fake == 0:
        raise InputError(f"interleave: expected real and fake rows; got {n_real} real and {n_fake} fake")
    parts = []
    for source, n, stream in ((REAL, n_real, _STREAM_REAL), (FAKE, n_fake, _STREAM_FAKE)):
        rows = epoch_rng(seed, epoch, stream).permutation(n)
        parts.append(Dataset.from_dict({"source": np.full(n, source, dtype=np.int8), "row": rows}))
    if probability in (0.0, 1.0):  # interleave_datasets rejects a zero probability
        only = parts[1 if probability == 1.0 else 0]
        return list(zip(only["source"], only["row"]))
    mixed = interleave_datasets(parts, probabilities=[1.0 - probability, probability],
                                seed=int(epoch_rng(seed, epoch, _STREAM_ORDER).integers(2 ** 31)),
                                stopping_strategy=stopping_strategy)
    return [(int(s), int(r)) for s, r in zip(mixed["source"], mixed["row"])]


def epoch_keys(spec: MixingSpec, n_real: int, n_fake: int, *, epoch: int, seed: int) -> list[Key]:
    """Every ``(source, row)`` of one epoch in training order (``rsp`` is batch-wise: use :func:`epoch_batches`)."""
    s = spec.strategy
    if spec.uses_fake and n_fake == 0 and not (s == "two-phase" and spec.phase(epoch) != "main"):
        raise InputError(f"mixing {s!r}: expected fake rows; the fake dataset is empty")
    if s == "none" or spec.phase(epoch) == "real-finetune":
        return _shuffle(_real(n_real), seed, epoch)
    if s in ("promptmix", "two-phase"):
        return _shuffle(_real(n_real) + _fake_rows(spec, n_fake, seed, epoch), seed, epoch)
    if s == "fake-only":
        return _shuffle(_fake_rows(spec, n_fake, seed, epoch), seed, epoch)
    if s == "interleave":
        return interleave_keys(n_real, n_fake, spec.interleave_probability, seed=seed, epoch=epoch,
                               stopping_strategy=spec.interleave_stopping)
    raise ConfigError(f"epoch_keys: strategy {s!r} is batch-wise; use epoch_batches")


def _chunk(keys: Sequence[Key], batch_size: int) -> list[list[Key]]:
    return [list(keys[i:i + batch_size]) for i in range(0, len(keys), batch_size)]


def rsp_batches(n_real: int, n_fake: int, batch_size: int, probability: float, *, seed: int,
                epoch: int) -> list[list[Key]]:
    """The ``rsp`` epoch: shuffled real batches, each real row bringing a fake row with probability ``p``."""
    if n_fake == 0:
        raise InputError("mixing 'rsp': expected fake rows; the fake dataset is empty")
    real = _chunk(_shuffle(_real(n_real), seed, epoch), batch_size)
    rng = epoch_rng(seed, epoch, _STREAM_RSP)
    fake_rng = epoch_rng(seed, epoch, _STREAM_FAKE)
    pool: list[int] = []
    batches = []
    for batch in real:
        k = int((rng.random(len(batch)) < probability).sum())
        extra = []
        for _ in range(k):
            if not pool:
                pool = list(fake_rng.permutation(n_fake))
            extra.append((FAKE, int(pool.pop())))
        batches.append(batch + extra)
    return batches


def epoch_batches(spec: MixingSpec, n_real: int, n_fake: int, batch_size: int, *, epoch: int,
                  seed: int) -> list[list[Key]]:
    """The epoch as a list of global batches (the last one may be short)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size: expected an integer >= 1; got {batch_size!r}")
    if spec.strategy == "rsp":
        return rsp_batches(n_real, n_fake, batch_size, spec.rsp_probability, seed=seed, epoch=epoch)
    return _chunk(epoch_keys(spec, n_real, n_fake, epoch=epoch, seed=seed), batch_size)


def shard_batches(batches: list[list[Key]], rank: int, world_size: int) -> list[list[Key]]:
    """This process's batches: every ``world_size``-th one from ``rank``, the list padded by wrapping
    round to a multiple of ``world_size`` so every process takes the same number of steps."""
    if world_size <= 1:
        return list(batches)
    if not batches:
        return []
    n = -(-len(batches) // world_size) * world_size
    padded = [batches[i % len(batches)] for i in range(n)]
    return padded[rank::world_size]


def composition(batches: list[list[Key]]) -> dict[str, int]:
    """Counts of real and fake rows in an epoch (for logs and tests)."""
    keys = [k for b in batches for k in b]
    return {"real": sum(1 for s, _ in keys if s == REAL), "fake": sum(1 for s, _ in keys if s == FAKE)}
