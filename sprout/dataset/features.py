"""Entry rules and hybrid rating normalisation: the one implementation (docs/design.md §4).

Training builds snapshots with it and serving applies it to a single incoming profile, so the
two can never disagree on which entries count or what a score means. Everything works on a CSR
batch of any size (one user included): ``indptr [n_users + 1]`` and per-entry arrays ``[n]``.
Statuses are int8 codes in the order of `LIST_STATUSES` (`status_codes` converts names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sprout.mal.models import LIST_STATUSES

if TYPE_CHECKING:
    from .corpus import Corpus

STATUS_CODES = {name: code for code, name in enumerate(LIST_STATUSES)}
ON_HOLD = STATUS_CODES["on_hold"]
DROPPED = STATUS_CODES["dropped"]
PLAN_TO_WATCH = STATUS_CODES["plan_to_watch"]

# The scale of a user with no rated entries: the middle of 1..10 with a typical spread.
NO_SCORES_MU = 5.0
NO_SCORES_SIGMA = 2.0
SIGMA_FLOOR = 1e-6  # keeps z finite for a user who gave every show the same score
DROPPED_FILL_SIGMAS = 1.5  # an unrated dropped show reads as 1.5 sigma below the user's mean

# Why an incoming entry was ignored.
IGNORED_RULE_DROPPED = 1  # plan-to-watch, or on-hold without a score
IGNORED_NOT_IN_CORPUS = 2  # unknown to the model (rare, rx, or simply new)
IGNORED_DUPLICATE = 3  # the same show listed again: the last listing wins
IGNORED_REASONS = {
    IGNORED_RULE_DROPPED: "rule_dropped",
    IGNORED_NOT_IN_CORPUS: "not_in_corpus",
    IGNORED_DUPLICATE: "duplicate",
}


def status_codes(names: np.ndarray | list[str]) -> np.ndarray:
    """Status names → int8 codes; an unknown name raises ValueError."""
    names = np.asarray(names, dtype=object)  # [n]
    known = np.array(LIST_STATUSES, dtype=object)
    codes = np.full(len(names), -1, np.int8)
    for code, name in enumerate(known):  # five statuses, not one pass per entry
        codes[names == name] = code
    if (codes < 0).any():
        raise ValueError(f"unknown list status {names[codes < 0][0]!r}; expected one of {LIST_STATUSES}")
    return codes


def entry_keep_mask(status: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Entries that count: plan-to-watch goes, and on-hold without a score goes."""
    status = np.asarray(status)  # [n]
    score = np.asarray(score)  # [n]
    return (status != PLAN_TO_WATCH) & ~((status == ON_HOLD) & (score == 0))  # [n] bool


def owners(indptr: np.ndarray) -> np.ndarray:
    """The user of every entry of a CSR batch."""
    return np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))  # [n]


def user_stats(
    indptr: np.ndarray, scores: np.ndarray, counted: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-user (mu, sigma) over scores > 0 (and ``counted``, when given).

    sigma is the population standard deviation plus 1e-6; a user with no rated entry gets
    mu = 5, sigma = 2. Two passes (mean, then squared deviations) stay exact for equal scores.
    """
    n_users = len(indptr) - 1
    owner = owners(indptr)  # [n]
    scores = np.asarray(scores, dtype=np.float64)  # [n]
    rated = scores > 0
    if counted is not None:
        rated &= counted
    n_rated = np.bincount(owner, weights=rated, minlength=n_users)  # [U]
    total = np.bincount(owner, weights=np.where(rated, scores, 0.0), minlength=n_users)  # [U]
    has_scores = n_rated > 0
    mu = np.where(has_scores, total / np.maximum(n_rated, 1), NO_SCORES_MU)  # [U]
    deviation = np.where(rated, scores - mu[owner], 0.0)  # [n]
    variance = np.bincount(owner, weights=deviation * deviation, minlength=n_users) / np.maximum(n_rated, 1)
    sigma = np.where(has_scores, np.sqrt(variance) + SIGMA_FLOOR, NO_SCORES_SIGMA)  # [U]
    return mu, sigma


def _alpha(sigma: np.ndarray) -> np.ndarray:
    """Weight of the user-relative z-score: a wide rater's scores say more about them."""
    return np.clip(sigma / 2.6, 0.3, 0.8)


def normalise(scores: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Hybrid normalised rating of scores (1..10, or fills) given each entry's user mu, sigma.

    A blend of the user-relative z-score and an absolute rescaling, so both a generous rater's
    7 and an objective rater's 7 keep some of their meaning. All arrays broadcast ([n]).
    """
    scores = np.asarray(scores, dtype=np.float64)
    z = np.clip((scores - mu) / sigma, -3.0, 3.0)
    absolute = np.clip((scores - 5.5) / 2.5, -2.5, 2.0)
    alpha = _alpha(np.asarray(sigma, dtype=np.float64))
    return np.clip(alpha * z + (1.0 - alpha) * absolute, -2.5, 2.5)


def denormalise(normalised: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """A 1..10 score for display: the inverse of `normalise` where it did not clip."""
    sigma = np.asarray(sigma, dtype=np.float64)
    alpha = _alpha(sigma)
    slope = alpha / sigma + (1.0 - alpha) / 2.5
    offset = alpha * mu / sigma + (1.0 - alpha) * 5.5 / 2.5
    return np.clip((np.asarray(normalised, dtype=np.float64) + offset) / slope, 1.0, 10.0)


def filled_scores(scores: np.ndarray, status: np.ndarray, mu_e: np.ndarray, sigma_e: np.ndarray) -> np.ndarray:
    """Scores with unrated entries filled in: mu, or mu - 1.5 sigma for a dropped show."""
    scores = np.asarray(scores, dtype=np.float64)  # [n]
    fill = np.where(np.asarray(status) == DROPPED, mu_e - DROPPED_FILL_SIGMAS * sigma_e, mu_e)  # [n]
    return np.where(scores > 0, scores, fill)


def normalised_values(
    indptr: np.ndarray, scores: np.ndarray, status: np.ndarray, counted: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(values float32 [n], rated bool [n], mu [U], sigma [U]) of kept entries.

    ``counted`` limits which scores shape mu and sigma (a held-out user's fold-in part), while
    every entry is still normalised with them.
    """
    mu, sigma = user_stats(indptr, scores, counted)  # [U], [U]
    owner = owners(indptr)  # [n]
    mu_e, sigma_e = mu[owner], sigma[owner]  # [n]
    values = normalise(filled_scores(scores, status, mu_e, sigma_e), mu_e, sigma_e)  # [n]
    return values.astype(np.float32), np.asarray(scores) > 0, mu, sigma


@dataclass(frozen=True)
class ProfileBatch:
    """Model-ready profiles of a batch of users, with what was ignored and why."""

    indptr: np.ndarray  # [U + 1] int64
    items: np.ndarray  # [n] int32 corpus index
    values: np.ndarray  # [n] float32 normalised rating (fills for unrated entries)
    rated: np.ndarray  # [n] bool: a real score; the rating loss ignores the rest
    scores: np.ndarray  # [n] int8 raw score, 0 = unrated
    status: np.ndarray  # [n] int8 status code
    mu: np.ndarray  # [U] float64
    sigma: np.ndarray  # [U] float64
    ignored_positions: np.ndarray  # [k] int64 positions in the input
    ignored_reasons: np.ndarray  # [k] int8 IGNORED_* code

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def ignored_counts(self) -> dict[str, int]:
        counts = np.bincount(self.ignored_reasons, minlength=len(IGNORED_REASONS) + 1)
        return {name: int(counts[code]) for code, name in IGNORED_REASONS.items()}


def order_within_users(owner: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The stable order by (owner, value) of ``owner [n] >= 0`` and int32 ``values [n]``: what
    ``np.lexsort((values, owner))`` gives, several times faster as one int64 key."""
    key = (np.asarray(owner).astype(np.int64) << 32) | (np.asarray(values).astype(np.int64) + 2**31)  # [n]
    return np.argsort(key, kind="stable")


def _last_of_each_show(owner: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Mask keeping one entry per (user, show): the last in input order."""
    if len(items) < 2:
        return np.ones(len(items), bool)
    same_user = owner[1:] == owner[:-1]
    if bool(np.all(~same_user | (items[1:] > items[:-1]))):  # already sorted and unique: common case
        return np.ones(len(items), bool)
    order = order_within_users(owner, items)  # stable: duplicates stay in input order
    key_owner, key_item = owner[order], items[order]
    last_in_run = np.ones(len(order), bool)
    last_in_run[:-1] = (key_owner[1:] != key_owner[:-1]) | (key_item[1:] != key_item[:-1])
    keep = np.zeros(len(items), bool)
    keep[order[last_in_run]] = True
    return keep


def profile_features(
    indptr: np.ndarray,
    anime_ids: np.ndarray,
    status: np.ndarray,
    scores: np.ndarray,
    corpus: Corpus,
) -> ProfileBatch:
    """Apply the entry rules, map shows into the corpus, dedupe, and normalise.

    Inputs are a CSR batch: ``indptr [U + 1]``, ``anime_ids / status / scores [n]`` (status as
    codes or names). mu and sigma are computed over the kept entries' scores. Kept entries keep
    their input order.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    anime_ids = np.asarray(anime_ids, dtype=np.int64)  # [n]
    status = np.asarray(status)
    if status.dtype.kind in "OUS":
        status = status_codes(status)
    status = status.astype(np.int8, copy=False)  # [n]
    scores = np.asarray(scores).astype(np.int8, copy=False)  # [n]
    if indptr[-1] != len(anime_ids) or len(status) != len(anime_ids) or len(scores) != len(anime_ids):
        raise ValueError("indptr[-1] and the per-entry arrays must agree on the number of entries")

    owner = owners(indptr)  # [n]
    positions = corpus.positions(anime_ids)  # [n] int32, -1 = not in corpus
    by_rule = entry_keep_mask(status, scores)  # [n]
    in_corpus = positions >= 0
    candidate = by_rule & in_corpus
    keep = candidate.copy()
    keep[candidate] = _last_of_each_show(owner[candidate], positions[candidate])

    reasons = np.zeros(len(anime_ids), np.int8)
    reasons[~in_corpus] = IGNORED_NOT_IN_CORPUS
    reasons[~by_rule] = IGNORED_RULE_DROPPED  # the rule is the more telling reason when both hold
    reasons[candidate & ~keep] = IGNORED_DUPLICATE
    ignored = np.flatnonzero(~keep)

    kept_indptr = np.zeros(len(indptr), np.int64)
    np.cumsum(np.bincount(owner[keep], minlength=len(indptr) - 1), out=kept_indptr[1:])
    kept_scores, kept_status = scores[keep], status[keep]
    values, rated, mu, sigma = normalised_values(kept_indptr, kept_scores, kept_status)
    return ProfileBatch(
        indptr=kept_indptr,
        items=positions[keep].astype(np.int32, copy=False),
        values=values,
        rated=rated,
        scores=kept_scores,
        status=kept_status,
        mu=mu,
        sigma=sigma,
        ignored_positions=ignored,
        ignored_reasons=reasons[ignored],
    )
