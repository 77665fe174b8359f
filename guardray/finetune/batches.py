"""Which training rows go into which batch in one epoch (pure; the loop supplies the shuffles).

Dynamic padding pads a batch to its longest member, so a batch that mixes one 256-token
jailbreak with fifteen 15-token questions costs as much as sixteen jailbreaks. With
``group_by_length`` the epoch's shuffled order is cut into mega-batches of
``mega_batches * batch_size`` rows, each mega-batch is sorted by length (longest first) and
sliced into batches, and the batches are then put in a random order: rows of similar length
share a batch, while which rows meet, and when, stays random (the scheme of transformers'
``LengthGroupedSampler``, plus the shuffle of batches). On the main job's injection rows
(21 % longer than 128 tokens, median 16) random batches of 16 almost always hold one long
row; grouped, the padded tokens per epoch fall several-fold (docs/BENCHMARKS.md, "Main job").
"""

from __future__ import annotations

from collections.abc import Sequence


def epoch_batches(order: Sequence[int], lengths: Sequence[int], batch_size: int, *,
                  group_by_length: bool = False, mega_batches: int = 50,
                  batch_order: Sequence[int] | None = None) -> list[list[int]]:
    """The batches (lists of row indices) of one epoch.

    Args:
        order: a random permutation of the row indices (n,).
        lengths: token count of each row (n,), indexed by row.
        batch_size: rows per batch (the last batch of a mega-batch may be smaller).
        group_by_length: group rows of similar length (see the module docstring).
        mega_batches: batches per mega-batch when grouping.
        batch_order: with grouping, a permutation of ``range(len(batches))`` giving the
            order the batches are taken in; None keeps them in mega-batch order.

    Returns:
        Batches covering every index of ``order`` exactly once. Without grouping:
        consecutive slices of ``order``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = list(order)
    if not group_by_length:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    span = max(1, mega_batches) * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        mega = sorted(order[start:start + span], key=lambda i: -lengths[i])  # stable
        batches += [mega[i:i + batch_size] for i in range(0, len(mega), batch_size)]
    if batch_order is None:
        return batches
    if sorted(batch_order) != list(range(len(batches))):
        raise ValueError(f"batch_order must be a permutation of range({len(batches)})")
    return [batches[i] for i in batch_order]


def n_batches(n_rows: int, batch_size: int, *, group_by_length: bool = False,
              mega_batches: int = 50) -> int:
    """How many batches `epoch_batches` makes of ``n_rows`` rows."""
    if not group_by_length:
        return -(-n_rows // batch_size)
    span = max(1, mega_batches) * batch_size
    full, rest = divmod(n_rows, span)
    return full * max(1, mega_batches) + -(-rest // batch_size)
