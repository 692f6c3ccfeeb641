"""Varied, valid and unique MAL-style usernames (letters, digits, ``_`` and ``-``; 2 to 16 chars)."""

from __future__ import annotations

import re
from collections.abc import Collection

import numpy as np

VALID_USERNAME = re.compile(r"^[A-Za-z0-9_-]{2,16}$")
MAX_LENGTH = 16

_FIRST = (
    "kuro shiro neko sora yuki hikari kage tsuki hoshi ryu kitsune sakura ame kaze hana akira ren yami "
    "taka mizu aoi haru natsu fuyu aki otaku anime manga senpai dark shadow night blue red silver ghost "
    "pixel lazy happy crazy silent lunar solar storm frost ember nova echo zero alpha omega mecha ninja "
    "samurai ronin pirate dragon fox wolf raven panda tiger bunny cat owl sleepy cosmic mochi ramen "
    "sushi tofu matcha kawaii baka chibi tensai kami oni yokai sensei hero maou isekai slime"
).split()
_SECOND = (
    "fan lover kun chan sama san hunter knight blade heart soul star fire rain sky moon sun dream gamer "
    "master lord king queen boy girl chan99 watcher otaku weeb sensei slayer rider tail paw fang wing "
    "byte bit core shade light dust leaf cloud wave bloom seeker "
).split()


def _styled(words: np.ndarray, style: np.ndarray) -> np.ndarray:
    """Lower case, Title case or UPPER case, per word."""
    return np.where(style == 0, words, np.where(style == 1, np.char.capitalize(words), np.char.upper(words)))


def draw_usernames(n: int, rng: np.random.Generator, taken: Collection[str] = ()) -> list[str]:
    """``n`` distinct names (case-insensitively), none of them in ``taken`` (compared casefolded)."""
    if n == 0:
        return []
    first = _styled(rng.choice(np.array(_FIRST), n), rng.choice(3, n, p=[0.6, 0.35, 0.05]))
    second = _styled(rng.choice(np.array(_SECOND), n), rng.choice(3, n, p=[0.55, 0.4, 0.05]))
    separator = rng.choice(np.array(["", "_", "-", ""]), n)
    digits = rng.integers(0, 10000, n)
    digit_text = np.where(
        digits < 3000, "", np.where(digits < 6000, (digits % 100).astype(str), digits.astype(str))
    )
    separator_or_none = np.where(digit_text == "", "", separator)
    pattern = rng.choice(4, n, p=[0.35, 0.3, 0.2, 0.15])
    names = np.select(
        [pattern == 0, pattern == 1, pattern == 2],
        [
            np.char.add(np.char.add(first, separator), second),  # kuro_neko
            np.char.add(first, digit_text),  # Sora7457
            np.char.add(np.char.add(first, separator_or_none), digit_text),  # panda-97
        ],
        np.char.add("x", first),  # xghost
    )
    names = np.char.add(names, np.where(np.char.str_len(names) < 2, "_0", ""))
    names = names.astype(f"<U{MAX_LENGTH}")
    return _make_unique(names.tolist(), rng, {t.casefold() for t in taken})


def _make_unique(names: list[str], rng: np.random.Generator, taken: set[str]) -> list[str]:
    """Give every repeated (or taken) name a random numeric suffix until all are distinct."""
    seen = set(taken)
    result = []
    for name in names:
        candidate = name
        while candidate.casefold() in seen:
            suffix = str(int(rng.integers(10, 100000)))
            candidate = name[: MAX_LENGTH - len(suffix)] + suffix
        seen.add(candidate.casefold())
        result.append(candidate)
    return result
