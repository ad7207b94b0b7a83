"""Errors that are the user's to fix (bad input, option, file or config), not bugs in ecgproto.

The CLI prints a :class:`UserError` as one line (``ecgproto CMD: error: ...``) and exits 1;
every other exception keeps its traceback, so a bug is never disguised as a user mistake.
The message names the file, record or option and what to do.

``UserError`` subclasses ``ValueError`` so library callers that catch ``ValueError`` for bad
arguments keep working; only the CLI distinguishes the two.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input, option, file or config: one line naming what is wrong and what to do."""


class InputNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist (also a ``FileNotFoundError``)."""


class ConfigError(UserError):
    """A configuration file or ``--set`` override does not match the expected schema."""
