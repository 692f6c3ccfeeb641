"""The figures a crawl run reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class CrawlStats:
    """Counts of one crawl run; ``as_dict`` is what artifacts, events and the database get."""

    users_discovered: int = 0
    sources_failed: int = 0  # discovery sources that failed (the run crawls the users it knows)
    users_due: int = 0
    users_ok: int = 0
    users_private: int = 0
    users_not_found: int = 0
    users_failed: int = 0
    users_throttled: int = 0
    profiles_changed: int = 0  # users whose stored list changed: what retraining triggers count
    full_listings: int = 0
    incremental_listings: int = 0
    entries_fetched: int = 0
    entries_added: int = 0
    entries_changed: int = 0
    entries_deleted: int = 0
    entries_skipped: int = 0  # list items that broke the documented shape (ids beyond 32 bits, say)
    users_deletions_held: int = 0  # full lists whose mass deletion waits for a later listing to agree
    entries_deletions_held: int = 0  # rows those lists would have deleted
    assignments: int = 0  # spool mode: assignments taken and crawled
    users_claim_expired: int = 0  # spool mode: handed-out users left unfetched, their claim ran out first
    batches_spooled: int = 0  # spool mode: batches published for the store's host to apply
    anime_refreshed: int = 0
    anime_missing: int = 0
    anime_failed: int = 0
    requests: int = 0
    retries: int = 0
    status_429: int = 0
    status_5xx: int = 0
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)
