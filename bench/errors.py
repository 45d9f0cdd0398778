"""The one exception the command line turns into a one-line `error: ...` and exit code 2."""


class UserError(Exception):
    """A mistake in the command line or the input files; printed as one line, exit code 2."""
