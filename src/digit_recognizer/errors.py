"""The one exception type the command line and web app turn into a clean message."""


class DigitsError(Exception):
    """A user-facing error: bad input, a corrupt file, a missing data set.

    The CLI prints ``str(error)`` on one line and exits non-zero; the web app
    answers with a 4xx JSON error. Anything else escaping is a bug.
    """
