"""Search policies by name (``search.policy`` in the config), and from saved state."""

from __future__ import annotations

from typing import Any

from guardray.search.policies import EpsilonGreedyPolicy, RandomPolicy, SearchPolicy
from guardray.search.space import SearchSpace
from guardray.search.thompson import OPTIONS as THOMPSON_OPTIONS
from guardray.search.thompson import ThompsonPolicy

POLICIES: dict[str, type[SearchPolicy]] = {
    "thompson": ThompsonPolicy,
    "egreedy": EpsilonGreedyPolicy,
    "random": RandomPolicy,
}


def make_policy(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> SearchPolicy:
    """A policy by name (``thompson``, ``egreedy``, ``random``) with its options.

    Raises:
        ValueError: an unknown name (listing the valid ones) or option.
    """
    if name not in POLICIES:
        raise ValueError(f"unknown search policy {name!r}; valid: {', '.join(POLICIES)}")
    try:
        return POLICIES[name](space, seed=seed, **options)
    except TypeError as exc:
        raise ValueError(f"search policy {name!r}: {exc}") from None


def policy_from_state(space: SearchSpace, state: dict[str, Any]) -> SearchPolicy:
    """Rebuild a policy from `SearchPolicy.state` (JSON), continuing exactly where it stopped."""
    name = state.get("policy")
    if name not in POLICIES:
        raise ValueError(f"saved state names an unknown policy {name!r}; valid: "
                         f"{', '.join(POLICIES)}")
    keys = ("epsilon", "exploit_scale", *THOMPSON_OPTIONS)
    options = {k: tuple(state[k]) if isinstance(state[k], list) else state[k]
               for k in keys if k in state}
    policy = POLICIES[name](space, seed=int(state["seed"]), **options)
    policy.load_state(state)
    return policy
