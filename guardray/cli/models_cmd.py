"""``guardray models prepare|path``: the embedded offline default models."""

from __future__ import annotations

import argparse

NAMES = ("smollm2-135m-instruct", "all-minilm-l6-v2")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="locate or prepare the embedded offline models")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    for action, text in (
        ("path", "print the local folder of an embedded model (converting it if needed)"),
        ("prepare", "convert/cache every embedded model now (SmolLM2: GGUF -> safetensors, once)"),
    ):
        a = msub.add_parser(action, help=text)
        if action == "path":
            a.add_argument("name", choices=NAMES)
        a.set_defaults(handler=run, action=action)


def run(args: argparse.Namespace) -> int:
    from guardray.modeling.offline import MissingExtraError, resolve_model

    names = [args.name] if args.action == "path" else list(NAMES)
    try:
        for name in names:
            path = resolve_model(f"embedded:{name}")
            print(path if args.action == "path" else f"{name}: {path}")
    except MissingExtraError as exc:
        import logging

        logging.getLogger("guardray").error("%s", exc)
        return 1
    return 0
