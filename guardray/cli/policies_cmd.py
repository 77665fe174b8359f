"""``guardray policies validate PATH...`` and ``guardray policies show PATH``."""

from __future__ import annotations

import argparse

SHOW_WIDTH = 400  # characters of a line `policies show` prints without --full


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("policies", help="validate and inspect policy YAML files")
    psub = p.add_subparsers(dest="policies_command", metavar="ACTION", required=True)

    v = psub.add_parser("validate", help="check policy files; errors name file, field and problem")
    v.add_argument("paths", nargs="+", metavar="PATH", help="policy YAML files or folders")
    v.set_defaults(handler=validate)

    s = psub.add_parser("show", help="print a policy as the text models and judges see")
    s.add_argument("path", metavar="PATH", help="a policy YAML file")
    s.add_argument("--examples", action="store_true", help="include the example prompts")
    s.add_argument("--full", action="store_true",
                   help=f"print lines longer than {SHOW_WIDTH} characters whole")
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
    """Print the rendered policy; lines over `SHOW_WIDTH` characters are cut with a note
    unless ``--full`` (a description may hold up to 2,000 characters)."""
    from guardray.policies import load_policy, render_policy

    text = render_policy(load_policy(args.path), with_examples=args.examples)
    if not args.full:
        text = "\n".join(_cut(line) for line in text.splitlines())
    print(text)
    return 0


def _cut(line: str) -> str:
    if len(line) <= SHOW_WIDTH:
        return line
    return f"{line[:SHOW_WIDTH]}... [{len(line) - SHOW_WIDTH} more characters; --full prints all]"
