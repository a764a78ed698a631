"""Errors a user can cause. Entry points print these as one line (no traceback) and exit with status 2."""

from __future__ import annotations


class ScratchLLMError(Exception):
    """Base class: the message names what is wrong and how to fix it."""


class ConfigError(ScratchLLMError, ValueError):
    """A configuration value or combination that cannot work."""


class DataError(ScratchLLMError, ValueError):
    """Missing, empty or corrupt input data."""


class NoExampleFits(DataError):
    """No fine-tuning example keeps an answer token inside the context. ``fix`` is the advice: the data's own by
    default; training replaces it when the context was cut to a starting model's, where raising it cannot help."""

    def __init__(self, split: str, context_length: int,
                 fix: str = "raise data.context_length or shorten the examples") -> None:
        self.split, self.context_length = split, context_length
        super().__init__(f"no {split} example fits in context_length={context_length} with an assistant token "
                         f"left; {fix}")


class CheckpointError(ScratchLLMError, ValueError):
    """A checkpoint that does not exist or does not fit the model."""


class InputError(ScratchLLMError, ValueError):
    """Model inputs that cannot be processed (too long, token ids outside the vocabulary)."""
