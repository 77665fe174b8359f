"""Start the guard on Ray Serve from a `ServeConfig` (the ``serve`` job's body).

Ray must already be connected (`guardray.cli.ray_init.init_ray`). Serve's HTTP proxy is
started on ``cfg.http`` (``127.0.0.1:8000`` by default) if Serve is not running yet; on a
cluster where Serve already runs, its proxy settings stay as they are.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def start_serving(cfg, info=None) -> str:
    """Check the model, deploy the guard and wait until it answers; return its base URL.

    Args:
        cfg: a `guardray.serve.config.ServeConfig`.
        info: the resolved guard (default: resolved here, before Serve starts).

    Returns:
        ``http://{host}:{port}{route_prefix}`` without a trailing slash.

    Raises:
        ModelError, ConfigError: before anything is deployed.
    """
    from ray import serve

    from guardray.serve.deployment import build_application
    from guardray.serve.guard import resolve_guard

    info = info or resolve_guard(cfg.model, num_cpus=cfg.deployment.num_cpus)
    serve.start(http_options={"host": cfg.http.host, "port": cfg.http.port})
    app = build_application(cfg, info)
    serve.run(app, name=cfg.app_name, route_prefix=cfg.route_prefix)
    url = f"http://{_url_host(cfg.http.host)}:{cfg.http.port}{cfg.route_prefix.rstrip('/')}"
    log.info("guard %s (%s) serving at %s: policies %s, threshold %.4f", info.name,
             info.version, url, list(info.policy_ids), info.threshold)
    return url


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def stop_serving(cfg) -> None:
    """Delete the guard's Serve application (Serve itself keeps running)."""
    from ray import serve

    serve.delete(cfg.app_name)
