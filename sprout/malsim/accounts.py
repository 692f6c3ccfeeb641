"""User accounts: names (looked up case-insensitively, as on MAL) and privacy / deletion flags."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Users:
    names: tuple[str, ...]  # [n_users]
    index: dict[str, int]  # casefolded name -> user number
    private: np.ndarray  # [n_users] bool: the list answers 403
    deleted: np.ndarray  # [n_users] bool: the account is gone (404)

    @classmethod
    def create(cls, names: Iterable[str], private: np.ndarray, deleted: np.ndarray) -> "Users":
        names = tuple(names)
        index = {name.casefold(): i for i, name in enumerate(names)}
        if len(index) != len(names):
            raise ValueError("usernames must be unique (case-insensitively)")
        return cls(names, index, np.asarray(private, bool), np.asarray(deleted, bool))

    @property
    def n_users(self) -> int:
        return len(self.names)

    def lookup(self, name: str) -> int | None:
        """The user number of a name, deleted accounts included; None when never known."""
        return self.index.get(name.casefold())

    def existing(self, name: str) -> int | None:
        """The user number of a living account, or None."""
        user = self.lookup(name)
        return None if user is None or self.deleted[user] else user

    def numbers(self, names: Iterable[str]) -> np.ndarray:
        """User numbers of known names; raises KeyError naming the first unknown one."""
        found = []
        for name in names:
            user = self.lookup(name)
            if user is None:
                raise KeyError(name)
            found.append(user)
        return np.asarray(found, dtype=np.int64)

    def with_private(self, users: np.ndarray, private: bool = True) -> "Users":
        flags = self.private.copy()
        flags[users] = private
        return replace(self, private=flags)

    def with_deleted(self, users: np.ndarray) -> "Users":
        flags = self.deleted.copy()
        flags[users] = True
        return replace(self, deleted=flags)

    def extended(self, names: list[str], private: np.ndarray) -> "Users":
        index = dict(self.index)
        for offset, name in enumerate(names):
            index[name.casefold()] = self.n_users + offset
        return Users(
            self.names + tuple(names),
            index,
            np.concatenate([self.private, np.asarray(private, bool)]),
            np.concatenate([self.deleted, np.zeros(len(names), bool)]),
        )
