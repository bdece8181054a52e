class HwocrError(Exception):
    """A problem with the user's input or environment, worded for the user.

    The CLI prints it without a traceback and exits with status 2.
    """


class TransientError(HwocrError):
    """A failure worth retrying (network, flaky storage, a crashed worker process)."""


def machine_memory() -> int:
    """Bytes of RAM this machine has (what a size setting is checked against before anything allocates)."""
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"
