"""Pydantic models of the MAL API v2 responses, lenient where the real API is.

They accept the real shapes: extra fields, a missing ``list_status``, ``paging`` without
``next``, and partial dates (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

ListStatusName = Literal["watching", "completed", "on_hold", "dropped", "plan_to_watch"]
LIST_STATUSES: tuple[str, ...] = ("watching", "completed", "on_hold", "dropped", "plan_to_watch")

# MAL usernames: 2 to 16 letters, digits, underscores or hyphens.
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{2,16}$")

# The store keeps ids and counts as 32-bit integers: a larger value is a bad answer, not data.
INT32_MAX = 2**31 - 1

_PARTIAL_DATE = re.compile(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$")


def _check_partial_date(value: str) -> str:
    if not _PARTIAL_DATE.match(value):
        raise ValueError(f"expected YYYY, YYYY-MM or YYYY-MM-DD, got {value!r}")
    return value


PartialDate = Annotated[str, AfterValidator(_check_partial_date)]


def partial_date_start(value: str | None) -> date | None:
    """The first day a partial date can mean (``"2019"`` → 2019-01-01)."""
    if value is None:
        return None
    parts = [int(p) for p in value.split("-")] + [1, 1]
    return date(parts[0], parts[1], parts[2])


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Picture(Lenient):
    medium: str | None = None
    large: str | None = None


class AnimeNode(Lenient):
    id: int = Field(gt=0, le=INT32_MAX)
    title: str = ""
    main_picture: Picture | None = None


class ListStatus(Lenient):
    status: ListStatusName
    score: int = Field(0, ge=0, le=10)  # 0 = unrated
    num_episodes_watched: int = Field(0, ge=0, le=INT32_MAX)
    is_rewatching: bool = False
    updated_at: UtcDatetime
    start_date: PartialDate | None = None
    finish_date: PartialDate | None = None


class AnimeListItem(Lenient):
    node: AnimeNode
    list_status: ListStatus | None = None


class Paging(Lenient):
    next: str | None = None
    previous: str | None = None


class AnimeListPage(Lenient):
    data: list[AnimeListItem]
    paging: Paging = Paging()


class RawListPage(Lenient):
    """A list page whose items are checked one by one (a bad item is skipped, not the page)."""

    data: list[dict[str, Any]]
    paging: Paging = Paging()


class Genre(Lenient):
    id: int
    name: str


class RelatedAnime(Lenient):
    node: AnimeNode
    relation_type: str
    relation_type_formatted: str | None = None


class AlternativeTitles(Lenient):
    synonyms: list[str] = []
    en: str | None = None
    ja: str | None = None


class AnimeDetails(Lenient):
    id: int = Field(gt=0, le=INT32_MAX)
    title: str
    main_picture: Picture | None = None
    alternative_titles: AlternativeTitles | None = None
    start_date: PartialDate | None = None
    end_date: PartialDate | None = None
    media_type: str | None = None
    rating: str | None = None  # g, pg, pg_13, r, r+, rx
    genres: list[Genre] = []
    mean: float | None = None
    popularity: int | None = Field(None, le=INT32_MAX)
    num_list_users: int | None = Field(None, le=INT32_MAX)
    num_episodes: int | None = Field(None, le=INT32_MAX)
    related_anime: list[RelatedAnime] = []


class Ranking(Lenient):
    rank: int


class RankingItem(Lenient):
    node: AnimeNode
    ranking: Ranking | None = None


class RankingPage(Lenient):
    data: list[RankingItem]
    paging: Paging = Paging()


class ApiError(Lenient):
    error: str = ""
    message: str = ""


class ListEntry(BaseModel):
    """One row of a user's list as the platform stores it (the API's list item, flattened)."""

    model_config = ConfigDict(frozen=True)

    anime_id: int
    status: ListStatusName
    score: int  # 0 = unrated
    num_episodes_watched: int
    is_rewatching: bool
    updated_at: datetime
    start_date: str | None = None
    finish_date: str | None = None
    title: str = ""

    @classmethod
    def from_item(cls, item: AnimeListItem) -> "ListEntry | None":
        """The entry of an API list item, or None when the item carries no list status."""
        s = item.list_status
        if s is None:
            return None
        return cls(
            anime_id=item.node.id,
            status=s.status,
            score=s.score,
            num_episodes_watched=s.num_episodes_watched,
            is_rewatching=s.is_rewatching,
            updated_at=s.updated_at,
            start_date=s.start_date,
            finish_date=s.finish_date,
            title=item.node.title,
        )
