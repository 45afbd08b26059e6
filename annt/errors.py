"""User-facing errors.

Anything a user can fix (a bad config value, a missing file, a dataset that no source has)
is raised as an :class:`AnntError` with a one-line message. The CLI prints that line and
exits with status 2; library callers catch it like any other exception.
"""


class AnntError(Exception):
    """A problem the user can fix; ``str(err)`` is one line meant to be printed as is."""


class ConfigError(AnntError):
    """The task file (or a ``--set`` override) is invalid."""


class DataError(AnntError):
    """A dataset could not be found, verified or parsed."""


class ModelError(AnntError):
    """A model folder is missing, corrupt, or does not match the config."""
