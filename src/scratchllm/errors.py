"""Errors a user can cause. Entry points print these as one line (no traceback) and exit with status 2."""

from __future__ import annotations


class ScratchLLMError(Exception):
    """Base class: the message names what is wrong and how to fix it."""


class ConfigError(ScratchLLMError, ValueError):
    """A configuration value or combination that cannot work."""


class DataError(ScratchLLMError, ValueError):
    """Missing, empty or corrupt input data."""


class CheckpointError(ScratchLLMError, ValueError):
    """A checkpoint that does not exist or does not fit the model."""


class InputError(ScratchLLMError, ValueError):
    """Model inputs that cannot be processed (too long, token ids outside the vocabulary)."""
