"""The project's error types.

Library code raises these; only the CLI turns them into a message and an exit code.
Each message names the problem and what to do about it.
"""


class EdgenasError(Exception):
    """Base class of every error edgenas raises on purpose.

    `exit_code` is what the CLI exits with: 2 for bad input (the default), 1 for a search that
    ran but had to stop."""

    exit_code = 2


class ConfigError(EdgenasError):
    """A pipeline file, a flag or a setting is invalid."""


class ProfileError(ConfigError):
    """A hardware profile is missing, does not parse or holds invalid settings."""


class BudgetError(ConfigError):
    """A budget can never be met by the search space (or is not a positive number)."""


class DataError(EdgenasError):
    """A dataset cannot be loaded."""


class ModelFileError(EdgenasError):
    """A file given as a model is not a readable ONNX model."""


class MeasurementError(EdgenasError):
    """onnxruntime could not time a model as the profile asks."""


class RunDirError(EdgenasError):
    """A run directory cannot be created, written or read."""


class SearchAborted(EdgenasError):
    """The search stopped on its own (too many children failed); what finished is saved."""

    exit_code = 1


class SpaceCheckError(EdgenasError):
    """A search space fails the conformance checks every space must pass (edgenas.testing)."""
