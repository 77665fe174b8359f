"""The tiny test models are the same in every process (their ids decide test outcomes)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = ("from guardray.modeling.tiny import build_tiny_tokenizer; "
          "print(build_tiny_tokenizer().backend_tokenizer.to_str())")


def test_tiny_tokenizer_is_identical_across_processes():
    # Rust hash maps are seeded per process: two processes, not two calls in one
    runs = [subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    assert runs[0] and runs[0] == runs[1]
