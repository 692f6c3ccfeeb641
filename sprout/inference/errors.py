"""Errors the inference engine raises for a client's mistakes (the service maps them to HTTP codes).

`InvalidProfile` is a bad request (400) whose message names the problem; `ProfileTooLarge` is the
one case with its own status (413). Both are `ValueError`s, so library callers need nothing special.
`Overloaded` is not the client's fault: the queues are full (503, with the seconds to wait).
"""

from __future__ import annotations


class InferenceError(ValueError):
    """Base class of the errors a request can cause in the inference engine."""


class InvalidProfile(InferenceError):
    """The profile cannot be used: empty, or none of its entries count (the message says why)."""


class ProfileTooLarge(InvalidProfile):
    """The profile has more entries than the engine accepts (`MAX_PROFILE_ENTRIES`)."""


class Overloaded(RuntimeError):
    """Too much work is already waiting; ``retry_after_s`` says when trying again is sensible."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s
