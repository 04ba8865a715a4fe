"""Turn any exception a job can end with into one line a person can act on.

A failure deep in a Ray Data actor or a Ray Train worker reaches the driver wrapped: a
``RayTaskError`` around the worker's exception, a ``WorkerGroupError`` holding one exception per
rank, Ray Data's ``UserCodeException`` chained in front of the real one. The line we print names
the innermost cause (the file and what was wrong with it), not the wrapper, and says in words
what the common storage failures mean (Arrow's and the AWS SDK's messages are precise but cryptic).
"""

from __future__ import annotations

import re

MAX_LINE = 600

# (pattern in the message, what it means) for the failures users meet most.
_MEANINGS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"Parquet file size is 0 bytes"), "empty file (0 bytes), expected Parquet"),
    (re.compile(r"Parquet magic bytes not found"), "not a Parquet file, or a truncated one (no Parquet footer)"),
    (re.compile(r"Couldn't deserialize thrift|Unexpected end of stream|IOError: Corrupt"),
     "corrupt Parquet file (unreadable metadata or pages)"),
    (re.compile(r"curlCode: 7\b|NETWORK_CONNECTION.*Could not connect|Connection refused"),
     "object store unreachable (connection refused): is the endpoint up and the address right?"),
    (re.compile(r"curlCode: 28\b|Timeout was reached|timed out", re.IGNORECASE),
     "object store did not answer in time (storage.s3_timeout_s)"),
    (re.compile(r"NoSuchBucket|bucket does not exist", re.IGNORECASE), "no such bucket"),
    (re.compile(r"AccessDenied|ACCESS_DENIED|Forbidden|Permission denied", re.IGNORECASE),
     "permission denied (credentials or bucket policy)"),
]
_WHERE = [
    re.compile(r"Could not open Parquet input source '([^']+)'"),
    re.compile(r"under key '([^']*)' in bucket '([^']+)'"),
    re.compile(r"for key '([^']*)' in bucket '([^']+)'"),
]


def unwrap(exc: BaseException) -> BaseException:
    """The exception that caused ``exc``, looking through Ray's wrappers (never through ours:
    our own ``raise X(...) from e`` already says what went wrong in X's message)."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = _wrapped(exc)
        if inner is None:
            return exc
        exc = inner
    return exc


def _wrapped(exc: BaseException) -> BaseException | None:
    failures = getattr(exc, "worker_failures", None)  # ray.train.WorkerGroupError: rank -> exception
    if isinstance(failures, dict) and failures:
        return failures[min(failures)]  # type: ignore[no-any-return]
    for attr in ("controller_failure", "cause"):  # ray.train.ControllerError, ray.exceptions.RayTaskError
        inner = getattr(exc, attr, None)
        if isinstance(inner, BaseException):
            return inner
    if type(exc).__module__.startswith("ray.") and exc.__cause__ is not None:
        return exc.__cause__  # e.g. ray.data's UserCodeException chained in front of the real error
    return None


def meaning(message: str) -> str | None:
    """What a storage/Arrow error message means, in words, if it is one we know."""
    for pattern, text in _MEANINGS:
        if pattern.search(message):
            return text
    return None


def location(message: str) -> str | None:
    """The file or object URI an Arrow/S3 error message names, if any."""
    for pattern in _WHERE:
        m = pattern.search(message)
        if m:
            return m.group(1) if m.lastindex == 1 else f"s3://{m.group(2)}/{m.group(1).rstrip('/')}"
    return None


def describe(exc: BaseException) -> str:
    """One line: ``<Type>: <where>: <what it means> (<the original first line>)``."""
    cause = unwrap(exc)
    first = next((line.strip() for line in str(cause).splitlines() if line.strip()), "")
    text = first or repr(cause)
    where, what = location(text), meaning(text)
    if what and what not in text:  # our own errors (BadFileError) already say it in words
        text = f"{where}: {what} ({text})" if where else f"{what} ({text})"
    line = f"{type(cause).__name__}: {text}"
    return line if len(line) <= MAX_LINE else line[:MAX_LINE - 3] + "..."


def is_input_error(exc: BaseException) -> bool:
    """Bad input, bad config or a failing store: the line says it all, a traceback would only bury it."""
    cause = unwrap(exc)
    return isinstance(cause, (ValueError, OSError, KeyError)) or meaning(str(cause)) is not None
