"""The trial order of `guardray.finetune.schedule`: estimated tokens, longest first."""

from guardray.finetune.schedule import longest_first, token_estimate


def test_token_estimate_hand_computed():
    # ceil(5/4)+2 = 4; ceil(8/4)+2 = 4; ceil(0/4)+2 = 2; ceil(400/4)+2 = 102 -> cut at 64
    assert token_estimate(["hello", "12345678", "", "x" * 400], max_length=64) == 4 + 4 + 2 + 64
    assert token_estimate([], max_length=8) == 0


def test_token_estimate_counts_repeated_rows_each_time():
    assert token_estimate(["abcd"] * 3, max_length=512) == 3 * token_estimate(["abcd"], 512)


def test_longest_first_orders_by_cost_and_breaks_ties_by_name():
    costs = {"tax": 10, "injection": 90, "safety": 40, "finance": 10}
    assert longest_first(costs) == ["injection", "safety", "finance", "tax"]
    assert longest_first({}) == []


def test_longest_first_beats_the_worst_order_on_two_slots():
    """LPT on 2 slots: the makespan of starting each next trial on the slot that frees first."""
    costs = {"a": 2, "b": 2, "c": 3, "long": 7}

    def makespan(order):
        slots = [0, 0]
        for name in order:
            slots[slots.index(min(slots))] += costs[name]
        return max(slots)

    assert makespan(longest_first(costs)) == 7          # the optimum: the long one alone
    assert makespan(["a", "b", "c", "long"]) == 9       # a|b, then c on a's slot, long at 2
