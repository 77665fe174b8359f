"""Helpers for tests of LLM backends and judges."""

from __future__ import annotations


class Recording:
    """A real generator (e.g. the local server's model) that records the prompts it is asked:
    a test counts what reached the model without standing in for it."""

    def __init__(self, generator):
        self.generator, self.prompts = generator, []

    @property
    def context_length(self):
        return self.generator.context_length

    def count_tokens(self, conversation):
        return self.generator.count_tokens(conversation)

    def generate(self, conversations, settings):
        self.prompts.extend(conversations)
        return self.generator.generate(conversations, settings)
