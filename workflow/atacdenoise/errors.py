"""The one exception type for problems a user can fix in their inputs or settings."""


class InputError(Exception):
    """A bad input file or setting.

    The CLI prints the message (no traceback) and exits with status 2, so the
    message must stand alone: name the file, say what was found, what was
    expected, and how to fix it.
    """
