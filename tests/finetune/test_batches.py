"""Epoch batches with and without length grouping (`guardray.finetune.batches`)."""

from __future__ import annotations

import numpy as np
import pytest

from guardray.finetune.batches import epoch_batches, n_batches


def _padded(batches, lengths) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def test_without_grouping_batches_are_consecutive_slices_of_the_order():
    order = [3, 0, 4, 1, 2]
    assert epoch_batches(order, [1] * 5, 2) == [[3, 0], [4, 1], [2]]
    assert n_batches(5, 2) == 3


def test_grouping_sorts_each_mega_batch_by_length_and_reorders_batches():
    lengths = [5, 1, 9, 3, 7, 2, 8, 4]  # by row index
    order = [0, 1, 2, 3, 4, 5, 6, 7]
    # mega-batches of 2 batches x 2 rows: [0,1,2,3] -> by length 9,5,3,1 = rows 2,0,3,1;
    # [4,5,6,7] -> 8,7,4,2 = rows 6,4,7,5
    got = epoch_batches(order, lengths, 2, group_by_length=True, mega_batches=2)
    assert got == [[2, 0], [3, 1], [6, 4], [7, 5]]
    assert epoch_batches(order, lengths, 2, group_by_length=True, mega_batches=2,
                         batch_order=[3, 0, 2, 1]) == [[7, 5], [2, 0], [6, 4], [3, 1]]
    # padded tokens: grouped 2*9 + 2*3 + 2*8 + 2*4 = 48; consecutive slices 2*5+2*9+2*7+2*8 = 58
    assert _padded(got, lengths) == 48 < _padded(epoch_batches(order, lengths, 2), lengths) == 58
    with pytest.raises(ValueError, match="permutation of range"):
        epoch_batches(order, lengths, 2, group_by_length=True, mega_batches=2,
                      batch_order=[0, 0, 1, 2])


@pytest.mark.parametrize("n,batch,mega", [(680, 16, 50), (1000, 16, 3), (7, 3, 1), (0, 4, 50)])
def test_every_row_once_and_the_batch_count_matches(n, batch, mega):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, size=n).tolist()
    order = rng.permutation(n).tolist()
    got = epoch_batches(order, lengths, batch, group_by_length=True, mega_batches=mega)
    assert sorted(i for b in got for i in b) == list(range(n))
    assert len(got) == n_batches(n, batch, group_by_length=True, mega_batches=mega)
    assert all(1 <= len(b) <= batch for b in got)


def test_on_skewed_lengths_grouping_cuts_padding_several_fold():
    # like the main job's injection rows: ~20 % long (200-256 tokens), the rest ~16 tokens
    rng = np.random.default_rng(1)
    lengths = np.where(rng.random(680) < 0.2, rng.integers(200, 257, 680),
                       rng.integers(8, 25, 680)).tolist()
    order = rng.permutation(680).tolist()
    plain = _padded(epoch_batches(order, lengths, 16), lengths)
    grouped = _padded(epoch_batches(order, lengths, 16, group_by_length=True), lengths)
    assert plain / grouped > 3
