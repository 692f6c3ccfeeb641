"""The corpus records each show's direct predecessors (prequels, parent stories) for serving, and
the picture and year answers show."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from sprout.dataset.corpus import Corpus, build_corpus
from sprout.mal.models import AnimeDetails, ListEntry, Picture, RelatedAnime
from sprout.store import Store
from sprout.store.records import UserListWrite

AT = datetime(2025, 3, 1, tzinfo=UTC)


def related(anime_id: int, kind: str) -> RelatedAnime:
    return RelatedAnime(node={"id": anime_id, "title": f"show {anime_id}"}, relation_type=kind)


def test_build_corpus_collects_prequels_and_parent_stories(tmp_path):
    relations = {
        2: [related(1, "prequel"), related(3, "sequel")],
        3: [related(2, "prequel"), related(1, "parent_story"), related(4, "side_story")],
        4: [related(77, "prequel")],  # a predecessor outside the corpus is still recorded
    }
    with Store.open(tmp_path / "sprout.duckdb") as store:
        rows = [ListEntry(anime_id=i, status="completed", score=8, num_episodes_watched=0, is_rewatching=False,
                          updated_at=AT) for i in (1, 2, 3, 4)]  # fmt: skip
        store.write_user_lists(
            [UserListWrite("alice", rows, True, AT, AT), UserListWrite("bob", rows[:2], True, AT, AT)]
        )
        store.upsert_anime(
            [AnimeDetails(id=i, title=f"show {i}", related_anime=relations.get(i, [])) for i in (1, 2, 3, 4)], AT
        )
        with store.transaction() as connection:
            cutoff = datetime(2025, 7, 1, tzinfo=UTC)
            corpus = build_corpus(connection, corpus_size=10, excluded_ratings=["rx"], cutoff=cutoff)
    assert corpus.anime_ids.tolist() == [1, 2, 3, 4]
    assert corpus.predecessors == ((), (1,), (1, 2), (77,))
    assert Corpus.from_json(corpus.to_json()).predecessors == corpus.predecessors


def test_corpus_json_without_predecessors_still_loads():
    older = {"anime_ids": [5, 6], "counts": [3, 1], "titles": ["a", "b"], "media_types": ["tv", None],
             "genres": [["Action"], []]}  # fmt: skip
    corpus = Corpus.from_dict(older)
    assert corpus.predecessors == () and corpus.positions(np.array([6])).tolist() == [1]
    assert corpus.to_dict()["predecessors"] == []
    with pytest.raises(ValueError, match="one tuple per corpus show"):
        Corpus.from_dict(older | {"predecessors": [[5]]})


def test_build_corpus_records_pictures_and_years_and_they_round_trip(tmp_path):
    shows = {  # anime id: (start date, picture)
        1: ("2019-04-05", Picture(medium="https://img.example/1.jpg", large="https://img.example/1l.jpg")),
        2: ("2007-10", Picture(medium="https://img.example/2.jpg")),
        3: ("1998", None),
        4: (None, None),
    }
    with Store.open(tmp_path / "sprout.duckdb") as store:
        rows = [ListEntry(anime_id=i, status="completed", score=8, num_episodes_watched=0, is_rewatching=False,
                          updated_at=AT) for i in (1, 2, 3, 4, 5)]  # fmt: skip
        lists = [UserListWrite(f"user{n}", rows[: 5 - n], True, AT, AT) for n in range(5)]  # 1 most listed
        store.write_user_lists(lists)
        store.upsert_anime(
            [AnimeDetails(id=i, title=f"show {i}", start_date=date, main_picture=picture)
             for i, (date, picture) in shows.items()],
            AT,
        )  # show 5 has no metadata at all
        with store.transaction() as connection:
            cutoff = datetime(2025, 7, 1, tzinfo=UTC)
            corpus = build_corpus(connection, corpus_size=10, excluded_ratings=["rx"], cutoff=cutoff)
    assert corpus.anime_ids.tolist() == [1, 2, 3, 4, 5]
    assert corpus.pictures == ("https://img.example/1l.jpg", "https://img.example/2.jpg", None, None, None)
    assert corpus.years == (2019, 2007, 1998, None, None)
    again = Corpus.from_json(corpus.to_json())
    assert (again.pictures, again.years) == (corpus.pictures, corpus.years)
    assert again.to_json() == corpus.to_json()


def test_corpus_json_without_pictures_or_years_still_loads():
    older = {"anime_ids": [5, 6], "counts": [3, 1], "titles": ["a", "b"], "media_types": ["tv", None],
             "genres": [["Action"], []], "predecessors": [[], [5]]}  # fmt: skip
    corpus = Corpus.from_dict(older)
    assert corpus.pictures == () and corpus.years == () and corpus.predecessors == ((), (5,))
    assert corpus.to_dict()["pictures"] == [] and corpus.to_dict()["years"] == []
    for name, value in (("pictures", ["https://img.example/5.jpg"]), ("years", [2001])):
        with pytest.raises(ValueError, match="one value per corpus show"):
            Corpus.from_dict(older | {name: value})
