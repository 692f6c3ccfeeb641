"""Crawl timing rules, checked by hand."""

from datetime import datetime, timedelta, timezone

from sprout.crawl.policy import CrawlPolicy, error_retry_at, plan_fetch

NOW = datetime(2026, 1, 10, 12, tzinfo=timezone.utc)
POLICY = CrawlPolicy()


def test_first_crawl_lists_the_whole_profile():
    plan = plan_fetch("alice", None, None, NOW, POLICY)
    assert plan.full and plan.since is None


def test_recent_full_refresh_means_incremental_from_the_high_water_mark():
    mark = NOW - timedelta(days=2)
    plan = plan_fetch("alice", mark, NOW - timedelta(days=1), NOW, POLICY)
    assert not plan.full and plan.since == mark


def test_stale_full_refresh_lists_everything_again():
    plan = plan_fetch("alice", NOW - timedelta(days=2), NOW - timedelta(days=7), NOW, POLICY)
    assert plan.full


def test_forced_full_listing():
    plan = plan_fetch("alice", NOW - timedelta(days=2), NOW - timedelta(hours=1), NOW, POLICY, force_full=True)
    assert plan.full


def test_error_backoff_doubles_and_is_capped():
    assert error_retry_at(NOW, 1, POLICY) == NOW + timedelta(hours=1)
    assert error_retry_at(NOW, 2, POLICY) == NOW + timedelta(hours=2)
    assert error_retry_at(NOW, 4, POLICY) == NOW + timedelta(hours=8)
    assert error_retry_at(NOW, 30, POLICY) == NOW + timedelta(days=7)
