"""The project's error for bad user input.

Library code raises :class:`SbrnnError` with a one-line message that names the bad value and
what is allowed; the CLI prints that line and exits with status 2.
"""


class SbrnnError(ValueError):
    """A value given by the user is outside what sbrnn accepts."""
