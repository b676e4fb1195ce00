"""Epoch composition of every mixing strategy (promptmix.training.mixing), in-process."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from promptmix.errors import ConfigError, InputError
from promptmix.training.train.mixing import (FAKE, REAL, MixingSpec, composition, epoch_batches, epoch_keys,
                                             sample_fake_rows, shard_batches)
from promptmix.training.train.trainer import LrSchedule


def _keys(batches):
    return [k for b in batches for k in b]


def test_promptmix_epoch_is_all_real_plus_exactly_r_mix_fresh_fake_rows():
    spec = MixingSpec("promptmix", r_mix=7)
    seen_samples = set()
    for epoch in range(4):
        keys = epoch_keys(spec, 10, 50, epoch=epoch, seed=3)
        real = [r for s, r in keys if s == REAL]
        fake = [r for s, r in keys if s == FAKE]
        assert sorted(real) == list(range(10))  # every real row exactly once
        assert len(fake) == 7 and len(set(fake)) == 7  # exactly r_mix distinct fake rows
        assert all(0 <= r < 50 for r in fake)
        seen_samples.add(tuple(sorted(fake)))
        assert keys == epoch_keys(spec, 10, 50, epoch=epoch, seed=3)  # (seed, epoch) fixes the epoch
    assert len(seen_samples) == 4  # re-drawn every epoch
    assert sorted(r for s, r in epoch_keys(spec, 10, 50, epoch=0, seed=4) if s == FAKE) != sorted(
        r for s, r in epoch_keys(spec, 10, 50, epoch=0, seed=3) if s == FAKE)
    # the sample is uniform: over many epochs every fake row comes up about r_mix / n_fake of the time
    counts = Counter(int(r) for e in range(400) for r in sample_fake_rows(50, 7, seed=0, epoch=e))
    assert len(counts) == 50 and max(counts.values()) < 2 * 400 * 7 / 50


def test_promptmix_rejects_impossible_r_mix():
    with pytest.raises(InputError, match="r_mix: 60 fake rows.*only 50"):
        epoch_keys(MixingSpec("promptmix", r_mix=60), 10, 50, epoch=0, seed=0)
    with pytest.raises(ConfigError, match="r_mix"):
        MixingSpec("promptmix", r_mix=None)
    with pytest.raises(ConfigError, match="mixing"):
        MixingSpec("sometimes")


def test_none_and_fake_only():
    keys = epoch_keys(MixingSpec("none"), 9, 30, epoch=2, seed=0)
    assert sorted(keys) == [(REAL, i) for i in range(9)]
    assert keys != sorted(keys)  # shuffled
    assert epoch_keys(MixingSpec("none"), 9, 30, epoch=3, seed=0) != keys
    assert sorted(epoch_keys(MixingSpec("fake-only"), 9, 30, epoch=0, seed=0)) == [(FAKE, i) for i in range(30)]
    sub = epoch_keys(MixingSpec("fake-only", r_mix=5), 9, 30, epoch=0, seed=0)
    assert len(sub) == 5 and {s for s, _ in sub} == {FAKE} and len(set(sub)) == 5


def test_interleave_uses_datasets_interleave_with_probabilities():
    from datasets import Dataset, interleave_datasets

    spec = MixingSpec("interleave", interleave_probability=0.3)
    keys = epoch_keys(spec, 200, 400, epoch=1, seed=5)
    assert keys == epoch_keys(spec, 200, 400, epoch=1, seed=5)
    assert keys != epoch_keys(spec, 200, 400, epoch=2, seed=5)
    real = [r for s, r in keys if s == REAL]
    fake = [r for s, r in keys if s == FAKE]
    assert len(set(real)) == len(real) and len(set(fake)) == len(fake)  # no row twice
    # first_exhausted: the epoch ends when the real rows run out (they are drawn 70 % of the time)
    assert len(real) == 200 and 0.2 < len(fake) / len(keys) < 0.4
    # all_exhausted: both sources are used up (datasets oversamples the shorter one)
    every = epoch_keys(MixingSpec("interleave", interleave_probability=0.3, interleave_stopping="all_exhausted"),
                       20, 40, epoch=0, seed=5)
    assert {r for s, r in every if s == FAKE} == set(range(40)) and {r for s, r in every if s == REAL} == set(range(20))
    # the same interleaving datasets produces from the same inputs (the order of sources)
    a = Dataset.from_dict({"x": [0] * 200})
    b = Dataset.from_dict({"x": [1] * 400})
    from promptmix.training.train.mixing import _STREAM_ORDER, epoch_rng

    seed = int(epoch_rng(5, 1, _STREAM_ORDER).integers(2 ** 31))
    ref = interleave_datasets([a, b], probabilities=[0.7, 0.3], seed=seed)["x"]
    assert [s for s, _ in keys] == list(ref)


def test_two_phase_mixed_then_real_only_at_a_lower_learning_rate():
    spec = MixingSpec("two-phase", epochs=3, two_phase_epochs=2, two_phase_lr_factor=0.1)
    assert spec.total_epochs == 5
    for epoch in range(3):
        c = composition(epoch_batches(spec, 6, 20, 4, epoch=epoch, seed=0))
        assert c == {"real": 6, "fake": 20}  # combined: every fake row
    for epoch in (3, 4):
        assert composition(epoch_batches(spec, 6, 20, 4, epoch=epoch, seed=0)) == {"real": 6, "fake": 0}
        assert spec.phase(epoch) == "real-finetune"
    sched = LrSchedule(0.99, spec)
    assert sched(2) == pytest.approx(0.99 ** 2)
    assert sched(3) == pytest.approx(0.99 ** 3 * 0.1) and sched(4) == pytest.approx(0.99 ** 4 * 0.1)
    assert LrSchedule(0.99, MixingSpec("promptmix", r_mix=1, epochs=3))(4) == pytest.approx(0.99 ** 4)
    with_rmix = MixingSpec("two-phase", r_mix=5, epochs=2, two_phase_epochs=1)
    assert composition(epoch_batches(with_rmix, 6, 20, 4, epoch=0, seed=0)) == {"real": 6, "fake": 5}


def test_rsp_batches_draw_fake_rows_with_a_probability():
    spec = MixingSpec("rsp", rsp_probability=0.25)
    batches = epoch_batches(spec, 4000, 300, 8, epoch=0, seed=1)
    assert batches == epoch_batches(spec, 4000, 300, 8, epoch=0, seed=1)
    assert sorted(r for s, r in _keys(batches) if s == REAL) == list(range(4000))
    for b in batches:
        n_real = sum(s == REAL for s, _ in b)
        assert n_real == 8 and sum(s == FAKE for s, _ in b) <= n_real
    c = composition(batches)
    assert abs(c["fake"] / c["real"] - 0.25) < 0.03
    fake_rows = [r for s, r in _keys(batches) if s == FAKE]
    assert set(fake_rows) == set(range(300))  # one shuffled pass after another over the fake set
    assert composition(epoch_batches(MixingSpec("rsp", rsp_probability=0.0), 40, 30, 8, epoch=0, seed=1))["fake"] == 0
    full = epoch_batches(MixingSpec("rsp", rsp_probability=1.0), 40, 30, 8, epoch=0, seed=1)
    assert all(sum(s == FAKE for s, _ in b) == sum(s == REAL for s, _ in b) for b in full)


def test_shard_batches_gives_every_process_the_same_number_of_steps():
    batches = [[(REAL, i)] for i in range(5)]
    shards = [shard_batches(batches, r, 2) for r in range(2)]
    assert [len(s) for s in shards] == [3, 3]
    assert shards[0] == [[(REAL, 0)], [(REAL, 2)], [(REAL, 4)]]
    assert shards[1] == [[(REAL, 1)], [(REAL, 3)], [(REAL, 0)]]  # wrapped round
    assert shard_batches(batches, 0, 1) == batches
    assert {k for s in shards for b in s for k in b} == {(REAL, i) for i in range(5)}  # nothing left out
    assert shard_batches([], 1, 2) == []


def _swap_epoch(spec, real_labels, fake_labels, epoch, seed=5):
    keys = epoch_keys(spec, len(real_labels), len(fake_labels), epoch=epoch, seed=seed,
                      labels=(real_labels, fake_labels))
    real = sorted(r for s, r in keys if s == REAL)
    fake = sorted(r for s, r in keys if s == FAKE)
    return keys, real, fake


@pytest.mark.parametrize("fraction", [0.5, 0.3, 1.0])
def test_swap_replaces_exactly_the_share_with_same_class_fake_rows(fraction):
    real_labels = [0] * 9 + [1] * 6 + [2] * 5  # 20 real rows, uneven classes
    fake_labels = [0, 1, 2] * 12
    spec = MixingSpec("swap", swap_fraction=fraction)
    k = round(fraction * 20)
    for epoch in range(3):
        keys, real, fake = _swap_epoch(spec, real_labels, fake_labels, epoch)
        assert len(keys) == 20 and len(fake) == k and len(real) == 20 - k  # the epoch keeps the real set's size
        assert len(set(real)) == len(real) and len(set(fake)) == len(fake)  # no row twice
        out = sorted(set(range(20)) - set(real))
        # the classes of the rows left out are exactly the classes of the fake rows put in
        assert Counter(real_labels[i] for i in out) == Counter(fake_labels[i] for i in fake)
        for c, n_c in Counter(real_labels).items():  # each class swaps floor(f * n_c) or one more
            swapped = sum(1 for i in out if real_labels[i] == c)
            assert int(fraction * n_c) <= swapped <= int(fraction * n_c) + 1
        assert keys == _swap_epoch(spec, real_labels, fake_labels, epoch)[0]  # (seed, epoch) fixes it


def test_swap_redraws_every_epoch_or_keeps_one_draw():
    real_labels, fake_labels = [0, 1] * 10, [0, 1] * 20
    redrawn = [tuple(_swap_epoch(MixingSpec("swap"), real_labels, fake_labels, e)[2]) for e in range(4)]
    assert len(set(redrawn)) == 4
    fixed_spec = MixingSpec("swap", swap_redraw=False)
    fixed = [_swap_epoch(fixed_spec, real_labels, fake_labels, e) for e in range(4)]
    assert len({tuple(f[1]) for f in fixed}) == 1 and len({tuple(f[2]) for f in fixed}) == 1  # same rows ...
    assert len({tuple(f[0]) for f in fixed}) == 4  # ... in a new order every epoch
    batches = epoch_batches(fixed_spec, 20, 40, 6, epoch=1, seed=5, labels=(real_labels, fake_labels))
    assert composition(batches) == {"real": 10, "fake": 10} and [len(b) for b in batches] == [6, 6, 6, 2]


def test_swap_without_labels_and_its_errors():
    keys = epoch_keys(MixingSpec("swap", swap_fraction=0.25), 12, 30, epoch=0, seed=0)
    assert composition([keys]) == {"real": 9, "fake": 3}
    with pytest.raises(InputError, match="class 1 needs 3 fake rows.*has 1 of that class"):
        epoch_keys(MixingSpec("swap"), 6, 4, epoch=0, seed=0, labels=([1] * 6, [0, 0, 0, 1]))
    with pytest.raises(InputError, match="only 2 rows"):
        epoch_keys(MixingSpec("swap"), 10, 2, epoch=0, seed=0)
    with pytest.raises(ConfigError, match="swap_fraction"):
        MixingSpec("swap", swap_fraction=1.5)


def test_lr_schedules():
    spec = MixingSpec("none", epochs=8)
    cos = LrSchedule(1.0, spec, "cosine")
    assert [round(cos(e), 4) for e in (0, 4, 8)] == [1.0, 0.5, 1.0]  # epoch 8 is past phase 1: factor 1
    assert cos(7) == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
    step = LrSchedule(1.0, spec, "multistep", gamma=0.1)  # default milestones: 4 and 6
    assert [step(e) for e in (0, 3, 4, 5, 6, 7)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert LrSchedule(1.0, spec, "multistep", milestones=(2,), gamma=0.5)(3) == 0.5
    two = LrSchedule(1.0, MixingSpec("two-phase", epochs=4, two_phase_epochs=2, two_phase_lr_factor=0.1), "cosine")
    assert two(4) == two(5) == pytest.approx(0.1)  # the real-only phase: factor x the initial rate
