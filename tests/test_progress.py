"""Live progress lines (`guardray.progress`): hand-computed rate and ETA, throttling, no-tty."""

from __future__ import annotations

import io

from guardray.progress import Progress, format_duration, format_line


def test_format_duration():
    assert format_duration(9.4) == "9s"
    assert format_duration(75) == "1m15s"
    assert format_duration(3725) == "1h02m"
    assert format_duration(float("nan")) == "?"


def test_line_has_rate_eta_and_metrics():
    # 30 of 120 steps in 10 s: 3 step/s, 90 left -> 30 s
    line = format_line("finetune tax/seed0", 30, 120, "step", 10.0, {"loss": 0.41234, "x": None})
    assert line == "finetune tax/seed0: step 30/120 (25%), 3 step/s, ETA 30s, loss 0.4123"


def test_line_of_a_resumed_run_counts_only_new_units():
    # resumed at step 100: 20 more in 10 s is 2 step/s; 80 left -> 40 s
    line = format_line("pretrain", 120, 200, "step", 10.0, initial=100)
    assert "step 120/200 (60%), 2 step/s, ETA 40s" in line


def test_finished_and_unknown_total():
    assert format_line("x", 5, 5, "row", 2.0).endswith("took 2s")
    assert format_line("x", 7, None, "row", 2.0) == "x: row 7, 3.5 row/s"


def test_not_a_terminal_logs_throttled_lines(progress_lines):
    stream = io.StringIO()  # not a tty: no bar
    with Progress("work", 4, unit="row", every_s=3600, stream=stream) as p:
        for _ in range(4):
            p.update(1, acc=0.5)
    assert len(progress_lines) == 1 and progress_lines[0].startswith("work: row 4/4 (100%)")
    assert "acc 0.5" in progress_lines[0] and stream.getvalue() == ""


def test_every_update_logs_when_the_interval_is_zero(progress_lines):
    p = Progress("w", 3, every_s=0, stream=io.StringIO())
    p.update()
    p.update()
    p.close()
    p.close()  # closing twice writes nothing more
    # the final line would repeat the last one: not written
    assert [line.split(",")[0] for line in progress_lines] == ["w: it 1/3 (33%)", "w: it 2/3 (67%)"]


def test_disabled_is_silent(progress_lines):
    with Progress("w", 3, enabled=False) as p:
        p.update(3)
    assert progress_lines == []
