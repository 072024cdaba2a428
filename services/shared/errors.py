"""The failure kinds every eraser service tells apart.

The consume loop (``shared/kafka.py``) turns a :class:`PoisonError` into a dead-letter record and
moves on; anything else stops the service without committing, so the batch is read again after a
restart. Reasons are short, fixed phrases plus ids: they end up in headers, logs and verdicts, so
they must never carry media bytes or personal data.
"""

from __future__ import annotations


class PoisonError(Exception):
    """Input that can never be processed, however often it is retried.

    Attributes:
        reason: A short, human-readable phrase safe to log and publish.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def kind(self) -> str:
        """The error class name, used as a small fixed label value."""
        return type(self).__name__


class MalformedEventError(PoisonError):
    """The record is not a valid event of the type the topic carries."""


class UnsupportedEventError(MalformedEventError):
    """The event is well formed but of a type or version this service does not read."""


class MediaRejectedError(PoisonError):
    """The media reference or payload breaks a rule (location, size, scheme)."""


class MediaUndecodableError(PoisonError):
    """The bytes are not an image eraser can decode within its limits."""


class FetchFailedError(PoisonError):
    """The media could not be fetched (missing, refused, or unavailable after retries)."""


class TransientError(Exception):
    """A failure that may succeed on retry (timeouts, 5xx); retried a bounded number of times."""


class UsageError(Exception):
    """A mistake the person at the command line made and can fix: a missing file, an unknown id.

    The ``eraser`` command prints the message as one line and exits 2, with no traceback; the
    message says what is wrong and what to do.
    """
