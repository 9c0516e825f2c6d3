"""User-facing errors.

Everything a user can get wrong (a missing file, a bad recipe value, a checkpoint that does not
fit) raises :class:`MaskTwinsError` with a one-line message that names the file or key and what
was expected. The CLI prints that line and exits with code 2, without a traceback.
"""


class MaskTwinsError(Exception):
    """A problem with the user's input, reported as one line (no traceback)."""

    exit_code = 2
