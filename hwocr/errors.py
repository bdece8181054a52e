class HwocrError(Exception):
    """A problem with the user's input or environment, worded for the user.

    The CLI prints it without a traceback and exits with status 2.
    """


class TransientError(HwocrError):
    """A failure worth retrying (network, flaky storage, a crashed worker process)."""
