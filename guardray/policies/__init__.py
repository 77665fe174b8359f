"""Guardrail policies: the schema, loading from YAML, and rendering into instruction text."""

from guardray.policies.loader import load_policies, load_policy, policy_files
from guardray.policies.render import format_gip_input, render_policy
from guardray.policies.schema import Policy, PolicyExamples

__all__ = [
    "Policy",
    "PolicyExamples",
    "format_gip_input",
    "load_policies",
    "load_policy",
    "policy_files",
    "render_policy",
]
