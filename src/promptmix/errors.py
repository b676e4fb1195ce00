"""The small exception hierarchy every stage raises.

Messages say what was expected, what was found, and how to fix it.
"""


class PromptmixError(Exception):
    """Base class of every error promptmix raises on purpose."""


class InputError(PromptmixError, ValueError):
    """A file, folder or value given by the user is missing, corrupt or of the wrong kind."""


class ConfigError(PromptmixError, ValueError):
    """A configuration key is unknown or its value is not allowed."""


class ModelLoadError(PromptmixError):
    """A model id or path could not be resolved or loaded."""


class CheckpointError(PromptmixError):
    """A checkpoint's keys or contents do not fit the architecture, or it is unsafe to load."""


class RunLockedError(PromptmixError):
    """Another process is already working on this run folder."""


class TrainingError(PromptmixError):
    """A training run cannot go on: a validation or test metric is NaN or infinite."""
