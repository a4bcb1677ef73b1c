"""User-facing errors.

A `FunmatchError` is a mistake in the user's input (a flag, a file, a config field). The command
line prints its message on one line, without a traceback, and exits with status 2.
"""


class FunmatchError(Exception):
    """A clear, one-line error about bad input; its message names the file, field or flag."""
