"""MAL API v2: response models, the async client, request budgets, backoff and user discovery."""

from sprout.mal.client import DEFAULT_ANIME_FIELDS, ClientStats, MalClient, UserList
from sprout.mal.discovery import DiscoverySource, RecentlyOnlineSource, SeedListSource, parse_seed_list
from sprout.mal.errors import (
    AnimeNotFound,
    MalError,
    MalRequestError,
    MalResponseError,
    PrivateList,
    RetriesExhausted,
    Throttled,
    UserNotFound,
)
from sprout.mal.limiter import RateLimiter, RequestLimiter, Unlimited
from sprout.mal.models import AnimeDetails, ListEntry, RankingPage
from sprout.mal.retry import BackoffPolicy

__all__ = [
    "DEFAULT_ANIME_FIELDS",
    "AnimeDetails",
    "AnimeNotFound",
    "BackoffPolicy",
    "ClientStats",
    "DiscoverySource",
    "ListEntry",
    "MalClient",
    "MalError",
    "MalRequestError",
    "MalResponseError",
    "PrivateList",
    "RankingPage",
    "RateLimiter",
    "RecentlyOnlineSource",
    "RequestLimiter",
    "RetriesExhausted",
    "SeedListSource",
    "Throttled",
    "Unlimited",
    "UserList",
    "UserNotFound",
    "parse_seed_list",
]
