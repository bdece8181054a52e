class HwocrError(Exception):
    """A problem with the user's input or environment, worded for the user.

    The CLI prints it without a traceback and exits with status 2.
    """


class NoSpace(HwocrError):
    """A write the disk refused (full, over quota, over a file size limit), at path."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message, path)  # both in args: the error crosses processes (Dask, Prefect) whole
        self.path = path

    def __str__(self) -> str:
        return self.args[0]


class TransientError(HwocrError):
    """A failure worth retrying (network, flaky storage, a crashed worker process)."""


def machine_memory() -> int:
    """Bytes of RAM this machine has (what a size setting is checked against before anything allocates)."""
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"
