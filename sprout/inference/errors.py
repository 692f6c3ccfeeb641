"""Errors the inference engine raises for a client's mistakes (the service maps them to HTTP codes).

`InvalidProfile` is a bad request (400) whose message names the problem; `ProfileTooLarge` is the
one case with its own status (413). Both are `ValueError`s, so library callers need nothing special.
"""

from __future__ import annotations


class InferenceError(ValueError):
    """Base class of the errors a request can cause in the inference engine."""


class InvalidProfile(InferenceError):
    """The profile cannot be used: empty, or none of its entries count (the message says why)."""


class ProfileTooLarge(InvalidProfile):
    """The profile has more entries than the engine accepts (`MAX_PROFILE_ENTRIES`)."""
