"""Figures printed for people keep enough digits to be read and told apart."""

from sprout.figures import percent, rating


def test_small_probabilities_never_read_as_zero_and_stay_distinct():
    shown = [percent(p) for p in (0.034, 0.0027, 0.00081, 8.1e-5, 7.9e-5)]
    assert shown == ["3.4%", "0.27%", "0.081%", "0.0081%", "0.0079%"]
    assert "0.0%" not in shown and len(set(shown)) == len(shown)
    assert percent(1e-9) == "<0.0001%" and percent(0.5) == "50%" and percent(0.999) == "100%"
    assert percent(float("nan")) == "?"


def test_ratings_carry_their_scale():
    assert rating(7.46) == "7.5/10" and rating(10) == "10.0/10"
