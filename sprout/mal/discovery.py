"""Where usernames to crawl come from. The API lists no users, so sources are pluggable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from sprout.mal.models import USERNAME_PATTERN

if TYPE_CHECKING:
    from sprout.mal.client import MalClient


@runtime_checkable
class DiscoverySource(Protocol):
    name: str

    async def discover(self) -> list[str]:
        """Usernames found, deduplicated, in the source's order."""
        ...


def parse_seed_list(text: str, *, origin: str = "seed list") -> list[str]:
    """Usernames of a seed list: one per line, ``#`` starts a comment, blank lines ignored.

    Raises ``ValueError`` naming the line of the first name that is not a valid MAL username.
    """
    names: dict[str, None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if not USERNAME_PATTERN.match(name):
            raise ValueError(
                f"{origin}, line {number}: {name!r} is not a MAL username "
                "(2-16 letters, digits, '_' or '-')"
            )
        names.setdefault(name, None)
    return list(names)


class SeedListSource:
    """A text file of usernames (see ``parse_seed_list``), read afresh on every ``discover()``."""

    name = "seed_list"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    async def discover(self) -> list[str]:
        # A seed list is small: reading it inline costs less than a thread hop.
        return parse_seed_list(self.path.read_text(encoding="utf-8"), origin=str(self.path))

    def __repr__(self) -> str:
        return f"SeedListSource({str(self.path)!r})"


class RecentlyOnlineSource:
    """Users linked from the website's recently-online page."""

    name = "recently_online"

    def __init__(self, client: MalClient) -> None:
        self.client = client

    async def discover(self) -> list[str]:
        return await self.client.fetch_recently_online()

    def __repr__(self) -> str:
        return f"RecentlyOnlineSource({self.client!r})"
