"""Live progress of long work, the same way in every stage.

On a terminal: a tqdm bar. Otherwise (a log file, ``ray job submit``, a Ray worker whose
output the driver forwards): one line at most every ``every_s`` seconds, and one at the end::

    finetune safety/seed0: step 120/480 (25%), 3.1 step/s, ETA 1m56s, loss 0.412, val_f1 0.871

`Progress` is what a stage uses; `format_line` and `format_duration` are pure.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

log = logging.getLogger("guardray.progress")


def format_duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3725`` -> ``1h02m``; ``9.5`` -> ``9s``."""
    if seconds != seconds or math.isinf(seconds):
        return "?"
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _metric(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_line(what: str, done: int, total: int | None, unit: str, seconds: float,
                metrics: Mapping[str, Any] | None = None, initial: int = 0) -> str:
    """One progress line: done/total, percentage, rate, ETA and the latest metrics.

    Args:
        what: the work (``"finetune safety/seed0"``).
        done / total: units done and expected (None: unknown).
        unit: ``"step"``, ``"row"``...
        seconds: time since the work started.
        metrics: latest values to show (``{"loss": 0.41}``).
        initial: units already done when the clock started (a resumed run): not in the rate.
    """
    rate = (done - initial) / seconds if seconds > 0 else 0.0
    parts = [f"{what}: {unit} {done}" + (f"/{total} ({100 * done / total:.0f}%)"
                                          if total else "")]
    parts.append(f"{rate:.3g} {unit}/s")
    if total and rate > 0 and done < total:
        parts.append(f"ETA {format_duration((total - done) / rate)}")
    elif total and done >= total:
        parts.append(f"took {format_duration(seconds)}")
    parts += [f"{k} {_metric(v)}" for k, v in (metrics or {}).items() if v is not None]
    return ", ".join(parts)


class Progress:
    """Progress of one piece of long work (see the module docstring).

    Args:
        what: the work, as the line starts.
        total: units expected (None: unknown).
        unit: name of a unit.
        every_s: at most one line per this many seconds when not on a terminal.
        stream: where a bar goes (default stderr); lines go to the ``guardray.progress``
            logger.
        enabled: False makes every call a no-op.
        initial: units already done before this process started (a resumed run).
    """

    def __init__(self, what: str, total: int | None = None, *, unit: str = "it",
                 every_s: float = 10.0, stream: TextIO | None = None, enabled: bool = True,
                 initial: int = 0):
        self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
        self.done = self.initial = initial
        self._logged = -1  # ``done`` when the last line was written
        self.metrics: dict[str, Any] = {}
        self.enabled = enabled
        self._start = self._last = time.monotonic()
        stream = stream or sys.stderr
        self._bar = None
        if enabled and stream.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=what, unit=unit, file=stream, dynamic_ncols=True,
                             initial=initial)

    def update(self, n: int = 1, **metrics: Any) -> None:
        """``n`` more units done; ``metrics`` replace the latest values shown."""
        if not self.enabled:
            return
        self.done += n
        self.metrics.update(metrics)
        if self._bar is not None:
            self._bar.update(n)
            if metrics:
                self._bar.set_postfix({k: _metric(v) for k, v in self.metrics.items()},
                                      refresh=False)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last, self._logged = now, self.done
            log.info("%s", self.line())

    def line(self) -> str:
        """The current progress line."""
        return format_line(self.what, self.done, self.total, self.unit,
                           time.monotonic() - self._start, self.metrics, self.initial)

    def close(self) -> None:
        """The final line, unless the last one already said it (or close the bar)."""
        if not self.enabled:
            return
        self.enabled = False
        if self._bar is not None:
            self._bar.close()
        elif self._logged != self.done:
            log.info("%s", self.line())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
