"""``guardray policies validate PATH...`` and ``guardray policies show PATH``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("policies", help="validate and inspect policy YAML files")
    psub = p.add_subparsers(dest="policies_command", metavar="ACTION", required=True)

    v = psub.add_parser("validate", help="check policy files; errors name file, field and problem")
    v.add_argument("paths", nargs="+", metavar="PATH", help="policy YAML files or folders")
    v.set_defaults(handler=validate)

    s = psub.add_parser("show", help="print a policy as the text models and judges see")
    s.add_argument("path", metavar="PATH", help="a policy YAML file")
    s.add_argument("--examples", action="store_true", help="include the example prompts")
    s.set_defaults(handler=show)


def validate(args: argparse.Namespace) -> int:
    from guardray.policies import load_policies

    policies = load_policies(args.paths)  # ConfigError -> main() prints it, exit 2
    for policy in policies:
        ex = policy.examples
        print(
            f"ok  {policy.id:<12} {policy.name}  ({len(policy.disallowed)} disallowed, "
            f"{len(policy.allowed)} allowed, {len(ex.unsafe)}+{len(ex.safe)} examples)"
        )
    return 0


def show(args: argparse.Namespace) -> int:
    from guardray.policies import load_policy, render_policy

    print(render_policy(load_policy(args.path), with_examples=args.examples))
    return 0
