"""Errors the MAL client raises, one per thing a caller can act on.

None of them ever carries the client id: it travels only in a request header, and URLs are
redacted before they enter a message.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query parameters whose values must not reach logs or messages, should a URL ever carry one.
_SECRET_QUERY_KEYS = ("client_id", "token", "secret", "key", "password", "auth")


def redact_url(url: str) -> str:
    """The URL with the values of secret-looking query parameters replaced by ``***``."""
    parts = urlsplit(str(url))
    if not parts.query:
        return str(url)
    query = [
        (k, "***" if any(s in k.lower() for s in _SECRET_QUERY_KEYS) else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query, safe=",*")))


class MalError(Exception):
    """Base of every error the MAL client raises."""


class UserNotFound(MalError):
    """The user does not exist (404 on their list)."""

    def __init__(self, username: str) -> None:
        super().__init__(f"MAL user {username!r} not found (404)")
        self.username = username


class PrivateList(MalError):
    """The user's list is private (a lone 403 on their list)."""

    def __init__(self, username: str) -> None:
        super().__init__(f"MAL user {username!r} has a private list (403)")
        self.username = username


class Throttled(MalError):
    """A run of 403s across different users: the API is refusing us, not the users.

    ``usernames`` are the users of the streak; retry them later instead of marking them private.
    """

    def __init__(self, usernames: list[str]) -> None:
        super().__init__(
            f"MAL answered 403 for {len(usernames)} different users in a row; treating it as "
            f"throttling and pausing (retry later: {', '.join(usernames)})"
        )
        self.usernames = list(usernames)


class RetriesExhausted(MalError):
    """A transient fault (429, 5xx, timeout, truncated body) outlasted every attempt."""

    def __init__(self, url: str, last_status: int | None, attempts: int, reason: str = "") -> None:
        self.url = redact_url(url)
        self.last_status = last_status
        self.attempts = attempts
        self.reason = reason
        status = f"HTTP {last_status}" if last_status is not None else ""
        last = " ".join(part for part in (status, reason) if part) or "no response"
        super().__init__(f"gave up on {self.url} after {attempts} attempts (last: {last})")


class MalResponseError(MalError):
    """A 2xx response whose body is not the shape the API documents."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = redact_url(url)
        self.reason = reason
        super().__init__(f"malformed response from {self.url}: {reason}")


class MalRequestError(MalError):
    """A client error that retrying cannot fix (400 bad request, 401 invalid client id, ...)."""

    def __init__(self, status: int, error: str = "", message: str = "") -> None:
        self.status = status
        self.error = error
        self.message = message
        detail = ": ".join(part for part in (error, message) if part)
        super().__init__(f"MAL request failed with HTTP {status}" + (f" ({detail})" if detail else ""))


class AnimeNotFound(MalError):
    """The anime id does not exist (404)."""

    def __init__(self, anime_id: int) -> None:
        super().__init__(f"MAL anime {anime_id} not found (404)")
        self.anime_id = anime_id
