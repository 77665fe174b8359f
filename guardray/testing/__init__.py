"""Helpers for tests and benchmarks: tiny real models built offline in seconds."""
