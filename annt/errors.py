"""User-facing errors.

Anything a user can fix (a bad config value, a missing file, a dataset that no source has)
is raised as an :class:`AnntError` with a one-line message. The CLI prints that line and
exits with status 2; library callers catch it like any other exception.

A run stopped by Ctrl-C (or SIGTERM, under the CLI) surfaces as :class:`Interrupted`, a
``KeyboardInterrupt`` that carries the run folder to resume.
"""


class AnntError(Exception):
    """A problem the user can fix; ``str(err)`` is one line meant to be printed as is."""


class ConfigError(AnntError):
    """The task file (or a ``--set`` override) is invalid."""


class DataError(AnntError):
    """A dataset could not be found, verified or parsed."""


class ModelError(AnntError):
    """A model folder is missing, corrupt, or does not match the config."""


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (or, under the CLI, SIGTERM) after its run folder was made.

    ``run_dir`` is that folder. If ``resumable`` (attack and train runs), the finished work in it
    is kept and ``--resume run_dir`` (or ``annt.run_config(path, resume=run_dir)``) continues it.
    Being a ``KeyboardInterrupt``, it passes through ``except Exception`` like the interrupt it
    replaces. ``hint``, when given, says how to continue instead (a grid continues by running the
    same command again).
    """

    def __init__(self, run_dir, resumable: bool = True, hint: str | None = None):
        super().__init__(f"interrupted; run folder {run_dir}")
        self.run_dir = run_dir
        self.resumable = resumable
        self.hint = hint  # how to continue, when it is not --resume (a grid: the same command again)
