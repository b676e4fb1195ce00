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
    Fake rows only: every fake row per epoch (or ``r_mix`` fresh ones when ``r_mix`` is set): the
    diffusion-augmentation paper's "synthetic only" runs.
``swap``
    The diffusion-augmentation paper's "swap half" (Sec. 3.3): a share ``swap_fraction`` of the real
    rows is left out and the same number of fake rows *of the same class* takes their place, so the
    epoch keeps the real set's size and class balance. Exactly ``round(swap_fraction * n_real)`` rows
    are swapped, shared among the classes by largest remainder (each class ``c`` swaps
    ``floor(f * n_c)`` or one more). ``swap_redraw`` draws the swapped real rows and their fake
    replacements afresh every epoch; without it they are drawn once (epoch 0's draw) and every epoch
    uses the same rows, only reshuffled. Without class labels (counting, depth) any fake rows replace
    the real ones.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...errors import ConfigError, InputError
from .config import STOPPING_STRATEGIES, STRATEGIES, MixingSpec  # noqa: F401  (re-used by the mixing code)

REAL, FAKE = 0, 1
Key = tuple[int, int]  # (source, row)

_STREAM_REAL, _STREAM_FAKE, _STREAM_ORDER, _STREAM_RSP, _STREAM_SWAP = 0, 1, 2, 3, 4


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


def _largest_remainder(counts: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` items shared among groups of sizes ``counts`` in proportion (floor, then one more for the largest
    remainders, ties in a random order); no group gets more than it has."""
    n = int(counts.sum())
    exact = k * counts / max(n, 1)
    share = np.minimum(np.floor(exact).astype(np.int64), counts)
    left = k - int(share.sum())
    order = sorted(range(len(counts)), key=lambda i: (-(exact[i] - share[i]), rng.random()))
    for i in order:
        if left <= 0:
            break
        if share[i] < counts[i]:
            share[i] += 1
            left -= 1
    return share


def swap_rows(n_real: int, n_fake: int, fraction: float, *, seed: int, epoch: int,
              real_labels: Sequence[int] | None = None, fake_labels: Sequence[int] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """The ``swap`` draw of one epoch: (real rows left out, fake rows put in), equally long and, with labels,
    class by class (``fake[i]`` has the class of ``real[i]``); sorted by class, then row."""
    if (real_labels is None) != (fake_labels is None):
        raise InputError("swap: expected class labels for both the real and the fake rows, or for neither")
    k = int(round(fraction * n_real))
    rng = epoch_rng(seed, epoch, _STREAM_SWAP)
    if real_labels is None:
        if k > n_fake:
            raise InputError(f"swap: {k} real rows ({fraction:g} of {n_real}) are to be replaced but the fake "
                             f"dataset has only {n_fake} rows; lower --swap-fraction or use a larger fake dataset")
        return np.sort(rng.choice(n_real, size=k, replace=False)), np.sort(rng.choice(n_fake, size=k, replace=False))
    real_labels = np.asarray(real_labels, dtype=np.int64)
    fake_labels = np.asarray(fake_labels, dtype=np.int64)
    if len(real_labels) != n_real or len(fake_labels) != n_fake:
        raise InputError(f"swap: got {len(real_labels)} real and {len(fake_labels)} fake labels for {n_real} real "
                         f"and {n_fake} fake rows")
    classes, counts = np.unique(real_labels, return_counts=True)
    shares = _largest_remainder(counts, k, rng)
    out_real, out_fake = [], []
    for c, share in zip(classes, shares):
        if share == 0:
            continue
        pool = np.flatnonzero(fake_labels == c)
        if len(pool) < share:
            raise InputError(f"swap: class {int(c)} needs {int(share)} fake rows to replace {int(share)} of its "
                             f"{int((real_labels == c).sum())} real rows but the fake dataset has {len(pool)} of "
                             "that class; lower --swap-fraction or generate more images of it")
        members = np.flatnonzero(real_labels == c)
        out_real.append(np.sort(rng.choice(members, size=int(share), replace=False)))
        out_fake.append(np.sort(rng.choice(pool, size=int(share), replace=False)))
    if not out_real:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(out_real), np.concatenate(out_fake)


def _swap_keys(spec: MixingSpec, n_real: int, n_fake: int, seed: int, epoch: int,
               labels: tuple[Sequence[int], Sequence[int]] | None) -> list[Key]:
    draw_epoch = epoch if spec.swap_redraw else 0
    real_labels, fake_labels = labels if labels is not None else (None, None)
    out, into = swap_rows(n_real, n_fake, spec.swap_fraction, seed=seed, epoch=draw_epoch,
                          real_labels=real_labels, fake_labels=fake_labels)
    left_out = set(int(i) for i in out)
    keys = [(REAL, i) for i in range(n_real) if i not in left_out] + [(FAKE, int(i)) for i in into]
    return _shuffle(keys, seed, epoch)


def epoch_keys(spec: MixingSpec, n_real: int, n_fake: int, *, epoch: int, seed: int,
               labels: tuple[Sequence[int], Sequence[int]] | None = None) -> list[Key]:
    """Every ``(source, row)`` of one epoch in training order (``rsp`` is batch-wise: use :func:`epoch_batches`).

    ``labels``: (real labels, fake labels) for ``swap`` (same-class replacement); ignored by the others.
    """
    s = spec.strategy
    if spec.uses_fake and n_fake == 0 and not (s == "two-phase" and spec.phase(epoch) != "main"):
        raise InputError(f"mixing {s!r}: expected fake rows; the fake dataset is empty")
    if s == "none" or spec.phase(epoch) == "real-finetune":
        return _shuffle(_real(n_real), seed, epoch)
    if s in ("promptmix", "two-phase"):
        return _shuffle(_real(n_real) + _fake_rows(spec, n_fake, seed, epoch), seed, epoch)
    if s == "fake-only":
        return _shuffle(_fake_rows(spec, n_fake, seed, epoch), seed, epoch)
    if s == "swap":
        return _swap_keys(spec, n_real, n_fake, seed, epoch, labels)
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
                  seed: int, labels: tuple[Sequence[int], Sequence[int]] | None = None) -> list[list[Key]]:
    """The epoch as a list of global batches (the last one may be short); ``labels`` as in :func:`epoch_keys`."""
    if batch_size < 1:
        raise ConfigError(f"batch_size: expected an integer >= 1; got {batch_size!r}")
    if spec.strategy == "rsp":
        return rsp_batches(n_real, n_fake, batch_size, spec.rsp_probability, seed=seed, epoch=epoch)
    return _chunk(epoch_keys(spec, n_real, n_fake, epoch=epoch, seed=seed, labels=labels), batch_size)


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
