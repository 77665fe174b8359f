"""Synthetic data generation (GuardFormer 3.1, 3.3): seeds, prompts, parsing, reflection."""
