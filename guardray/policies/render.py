"""Render a policy into the texts models see.

- `render_policy`: the "Can / Should not" block used in generation prompts and LLM judges
  (the style of UniGuard appendix A.3's LlamaGuard categories).
- `format_gip_input`: the GIP instruction input of GuardFormer 3.3,
  ``x̄_i = P_desc \\nQuery: x_i [SEP] r_i``; without a rationale (inference, rationale
  dropout) the `` [SEP] r_i`` part is left out.
"""

from __future__ import annotations

from guardray.policies.schema import Policy


def render_policy(policy: Policy, *, with_examples: bool = False) -> str:
    """The policy as a plain-text block: name, description, then Should not / Can lists.

    Args:
        policy: the policy to render.
        with_examples: also list the example prompts (for few-shot generation prompts).

    Returns:
        Text such as::

            Avoid Tax Advice
            <description>
            Should not
              - ...
            Can
              - ...
    """
    lines = [policy.name, policy.description, "Should not"]
    lines += [f"  - {item}" for item in policy.disallowed]
    lines.append("Can")
    lines += [f"  - {item}" for item in policy.allowed]
    if with_examples:
        for kind, items in (("safe", policy.examples.safe), ("unsafe", policy.examples.unsafe)):
            if items:
                lines.append(f"Examples of {kind} prompts")
                lines += [f"  - {item}" for item in items]
    return "\n".join(lines)


def format_gip_input(
    description: str, text: str, rationale: str | None = None, sep_token: str = "[SEP]"
) -> str:
    """GuardFormer 3.3 instruction input: ``"{description}\\nQuery: {text} {sep} {rationale}"``.

    Args:
        description: the policy description P_desc.
        text: the user prompt x_i.
        rationale: the rationale r_i, or None/"" when there is none (always at inference).
        sep_token: the tokenizer's separator token (``[SEP]`` for BERT, ``</s>`` for XLM-R).

    Returns:
        The instruction string the encoder classifies.
    """
    base = f"{description}\nQuery: {text}"
    if rationale:
        return f"{base} {sep_token} {rationale}"
    return base
