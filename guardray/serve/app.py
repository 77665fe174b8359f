"""Serve application builders: run the guard as any other Ray Serve app.

``serve run`` (a local or remote cluster) calls `build_app` with the arguments given on its
command line or in a Serve config file::

    serve run guardray.serve.app:build_app model.path=/models/uniguard \\
        deployment.num_replicas=2 batching.max_batch_size=32

    # serve_config.yaml (serve deploy / serve run serve_config.yaml / RayService)
    applications:
      - name: guardray
        route_prefix: /
        import_path: guardray.serve.app:build_app
        args:
          config: configs/serve.yaml          # optional: a ServeConfig YAML
          model: {path: /models/uniguard}     # nested sections, merged over the file
          "batching.max_batch_size": 32       # or dotted overrides

The arguments are a `guardray.serve.config.ServeConfig` (``config`` names a YAML file to
start from): nested mappings merge into the file's sections, dotted keys are ``key=value``
overrides. ``http``, ``app_name``, ``route_prefix`` and ``ray`` are ignored here: the Serve
config file (``http_options``, ``name``, ``route_prefix``) or ``serve run`` flags set them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def config_from_args(args: Mapping[str, Any] | None):
    """The `ServeConfig` described by app-builder ``args`` (see the module docstring).

    Raises:
        ConfigError: unknown keys or invalid values, naming the field.
    """
    from guardray.config import load_yaml
    from guardray.config.loader import load_config
    from guardray.serve.config import ServeConfig

    args = dict(args or {})
    path = args.pop("config", None)
    data: dict[str, Any] = dict(load_yaml(path)) if path else {}
    overrides = []
    for key, value in args.items():
        if "." in key or not isinstance(value, Mapping):
            overrides.append(f"{key}={value}" if isinstance(value, str) else
                             f"{key}={_yaml(value)}")
        else:
            data[key] = _merge(data.get(key) or {}, value)
    return load_config(ServeConfig, path, overrides, data=data)


def _yaml(value: Any) -> str:
    import json

    return json.dumps(value)  # JSON is YAML: lists, numbers and booleans keep their types


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, Mapping) else v
    return out


def build_app(args: dict[str, Any] | None = None):
    """Ray Serve app builder (``import_path: guardray.serve.app:build_app``).

    Returns:
        The bound guard deployment (`guardray.serve.deployment.build_application`).
    """
    from guardray.serve.deployment import build_application

    return build_application(config_from_args(args))
