"""Remote stores (S3 through s3fs, HTTP through aiohttp): every call has a connect and a read timeout, and every
failure is told as what the user must check: the credentials, the endpoint, or the network.

Timeouts are fsspec configuration, set once per process before any filesystem is made and passed to child
processes (render workers, torchrun's ranks) through FSSPEC_S3, which fsspec reads when it is imported. botocore tries
each request once and s3fs's own loop (five tries, backing off) retries a cut connection, so a call against a store
that never answers ends after at most five read timeouts; the checks before a run starts try once (checking()), so
they fail within one.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from concurrent.futures.process import BrokenProcessPool
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from hwocr.errors import HwocrError, TransientError


class RemoteSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    connect_timeout: PositiveFloat = Field(10, description="Seconds to open a connection to a remote store.")
    read_timeout: PositiveFloat = Field(60, description="Seconds a remote store may stay silent on a request.")


ACTIVE = RemoteSettings()


def configure(settings: RemoteSettings) -> None:
    """Every fsspec filesystem made from now on, here and in child processes, has these timeouts."""
    import fsspec.config

    global ACTIVE
    ACTIVE = settings
    s3 = {"config_kwargs": {"connect_timeout": settings.connect_timeout, "read_timeout": settings.read_timeout,
                            "retries": {"mode": "standard", "total_max_attempts": 1}}}
    os.environ["FSSPEC_S3"] = json.dumps(s3)
    fsspec.config.conf.setdefault("s3", {}).update(s3)
    try:
        import aiohttp
    except ImportError:
        return
    timeout = aiohttp.ClientTimeout(sock_connect=settings.connect_timeout, sock_read=settings.read_timeout)
    for protocol in ("http", "https"):
        fsspec.config.conf.setdefault(protocol, {}).setdefault("client_kwargs", {})["timeout"] = timeout


S3_PROTOCOLS = ("s3://", "s3a://")


@contextlib.contextmanager
def checking(named: str):
    """Within: every S3 call is tried once, so the checks before a run fail within one timeout, not after s3fs's
    five tries (it reads its `retries` class attribute per call; no keyword sets it). named: the text of what the
    checks read (settings, arguments); without an S3 URL in it, s3fs is not even imported (a third of a second)."""
    if not any(p in named for p in S3_PROTOCOLS):
        yield
        return
    try:
        import s3fs
    except ImportError:
        yield
        return
    before = s3fs.S3FileSystem.retries
    s3fs.S3FileSystem.retries = 1
    try:
        yield
    finally:
        s3fs.S3FileSystem.retries = before


def causes(e: BaseException):
    """e, then what caused it, and so on (each once)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _endpoint(url: str | None) -> str:
    if url and url.startswith(("http://", "https://")):
        p = urlparse(url)
        return f"{p.scheme}://{p.netloc}"
    return os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3") or "the AWS endpoint"


CREDENTIALS_REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
                       "InvalidToken", "403"}


def problem(e: BaseException, url: str | None = None) -> HwocrError | None:
    """The error a remote failure is for the user (a TransientError when trying again may help), or None when e is
    not a remote failure."""
    where = f"{url}: " if url else ""
    endpoint = _endpoint(url)
    for err in causes(e):
        name = type(err).__name__
        text = str(err)
        if name in ("NoCredentialsError", "PartialCredentialsError") or "Unable to locate credentials" in text:
            return HwocrError(f"{where}no credentials for the object store: set AWS_ACCESS_KEY_ID and "
                              "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment")
        response = getattr(err, "response", None)
        code = str((response.get("Error") or {}).get("Code", "")) if isinstance(response, dict) else ""
        if code in CREDENTIALS_REFUSED or (name == "PermissionError" and url and "://" in url):
            return HwocrError(f"{where}the object store at {endpoint} refused the credentials ({code or text[:120]}): "
                              "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's policy")
        if name in ("ReadTimeoutError", "ServerTimeoutError", "TimeoutError", "FSTimeoutError", "ReadTimeout") \
                or "Read timeout" in text:
            return TransientError(f"{where}{endpoint} accepted the connection but sent nothing for "
                                  f"{ACTIVE.read_timeout:g} s (remote.read_timeout): check that the endpoint is the "
                                  "store's and that it is up")
        if name in ("ConnectTimeoutError", "ConnectTimeout"):
            return TransientError(f"{where}no connection to {endpoint} within {ACTIVE.connect_timeout:g} s "
                                  "(remote.connect_timeout): check the endpoint (AWS_ENDPOINT_URL) and the network")
        if name in ("EndpointConnectionError", "ClientConnectorError", "ConnectionRefusedError", "gaierror",
                    "ClientConnectorDNSError", "ClientOSError", "ServerDisconnectedError", "ConnectionClosedError"):
            return TransientError(f"{where}cannot connect to {endpoint} ({name}: {text.splitlines()[0][:150]}): "
                                  "check the endpoint (AWS_ENDPOINT_URL, or the URL's host) and the network")
    return None


# What a stage retries (IO_RETRY in tasks/stage.py): network hiccups and crashed workers, never bad input.
_TRANSIENT = (
    TransientError,
    ConnectionError,
    TimeoutError,
    BrokenProcessPool,
)


@functools.cache
def _network_errors() -> tuple[type[BaseException], ...]:
    """The S3 clients' errors for a connection that failed or timed out (their own classes, not OSError's)."""
    found: list[type[BaseException]] = []
    try:
        from botocore import exceptions as b

        found += [b.EndpointConnectionError, b.ConnectTimeoutError, b.ReadTimeoutError, b.ConnectionClosedError]
    except ImportError:
        pass
    try:
        import aiohttp

        found += [aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError]
    except ImportError:
        pass
    return tuple(found)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT):
        return True
    if isinstance(exc, HwocrError):
        return False
    return isinstance(exc, _network_errors())
