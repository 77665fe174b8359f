"""``guardray serve``: a trained guard behind a Ray Serve HTTP JSON API.

Forms::

    guardray serve --model DIR [--policy ID ...] [--host 127.0.0.1] [--port 8000]
                   [--replicas N | --autoscale MIN:MAX] [--max-batch-size 16]
                   [--batch-wait-ms 5] [--quantize int8]
    guardray serve --config SERVE.yaml [key=value ...]

Routes: ``POST /v1/classify`` ({"prompts": [...], "policies": [...]}), ``GET /healthz``,
``GET /v1/policies``, ``GET /v1/stats``, ``GET /openapi.json``, ``GET /docs``. Binds to
127.0.0.1 unless ``--host`` says otherwise. Runs until Ctrl-C. The same app runs on any Ray
cluster with ``serve run guardray.serve.app:build_app model.path=DIR`` or a Serve config file
(cluster/README.md).
"""

from __future__ import annotations

import argparse

from guardray.cli.classify_cmd import GUARD_FLAGS, add_guard_flags
from guardray.cli.job_runner import print_or_run, set_flags


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a trained guard over HTTP on Ray Serve (dynamic batching, health, OpenAPI)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-c", "--config", metavar="FILE", help="serve config YAML")
    p.add_argument("--model", metavar="DIR", help="guard checkpoint (HF folder)")
    p.add_argument("--policy", action="append", metavar="ID",
                   help="serve only these policies (repeatable; default: the checkpoint's)")
    p.add_argument("--policies", nargs="+", metavar="PATH",
                   help="policy YAML files/folders (descriptions for instruction guards)")
    p.add_argument("--threshold", type=float, help="override the checkpoint's threshold")
    add_guard_flags(p)
    p.add_argument("--host", help="HTTP host (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (default 8000)")
    p.add_argument("--replicas", type=int, help="fixed number of replicas")
    p.add_argument("--autoscale", metavar="MIN:MAX", help="autoscale between MIN and MAX")
    p.add_argument("--max-batch-size", type=int, help="pairs per forward pass (1: no batching)")
    p.add_argument("--batch-wait-ms", type=float, help="wait for a batch to fill (ms)")
    p.add_argument("--num-cpus", type=float, help="CPUs per replica")
    p.add_argument("--num-gpus", type=float, help="GPUs per replica")
    p.add_argument("--print-config", action="store_true", help="print the resolved config")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. limits.max_prompts=16")
    p.set_defaults(handler=run)


def build_config(args):
    """The `ServeConfig` from ``--config``, the flags and the overrides."""
    from guardray.config import ConfigError, load_config, load_yaml
    from guardray.serve import ServeConfig

    data = load_yaml(args.config) if args.config else {}
    data.setdefault("job", "serve")

    def section(name: str) -> dict:
        data[name] = dict(data.get(name) or {})
        return data[name]

    set_flags(data, args, {
        **GUARD_FLAGS, "host": "http.host", "port": "http.port",
        "replicas": "deployment.num_replicas", "num_cpus": "deployment.num_cpus",
        "num_gpus": "deployment.num_gpus", "max_batch_size": "batching.max_batch_size"})
    if args.autoscale:
        lo, sep, hi = args.autoscale.partition(":")
        if not sep or not lo.isdigit() or not hi.isdigit():
            raise ConfigError(f"--autoscale {args.autoscale!r}: expected MIN:MAX, e.g. 1:4")
        section("deployment")["autoscaling"] = {"min_replicas": int(lo), "max_replicas": int(hi)}
    if args.batch_wait_ms is not None:
        section("batching")["batch_wait_timeout_s"] = args.batch_wait_ms / 1000.0
    return load_config(ServeConfig, args.config, args.overrides, data=data)


def run(args: argparse.Namespace) -> int:
    return print_or_run(build_config(args), _main, args)


def _main():
    from jobs.serve import main

    return main
