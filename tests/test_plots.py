"""helpers.plots: the figures draw what the numbers say (calibration bars, random heads; audit: test_audit.py)."""

import numpy as np
import pytest

from helpers.plots import plot_calibration, plot_random_heads


def _bars(fig) -> np.ndarray:
    """The error bars the figure drew: one (x, low, high) row per bin."""
    ax = fig.axes[0]
    segments = [s for c in ax.collections for s in c.get_segments()]
    return np.array([(s[0][0], min(s[0][1], s[1][1]), max(s[0][1], s[1][1])) for s in segments])


# (observed, n): a bin where every pair agrees is the case that raised "'yerr' must not contain negative values":
# its Wilson upper bound is exactly 1, computed as 1 - 1.1e-16 for n = 6 (and 10, 17, ...), below the point
@pytest.mark.parametrize(("observed", "n"), [(1.0, 6), (1.0, 10), (0.0, 6), (0.5, 2), (2 / 3, 3)])
def test_calibration_bar_is_the_wilson_interval_even_where_it_ends_at_the_point(observed, n):
    table = {"ece": 0.1, "bins": [{"predicted": 0.85, "observed": observed, "n": n},
                                  {"predicted": 0.35, "observed": 0.25, "n": 4}]}
    bars = _bars(plot_calibration(table))
    assert bars.shape == (2, 3)
    x, low, high = bars[np.argmax(bars[:, 0])]
    # Wilson at z = 1: the p with (observed - p)^2 <= p (1 - p) / n, roots of a quadratic; it always holds observed
    centre, half = (observed + 1 / (2 * n)) / (1 + 1 / n), np.sqrt(observed * (1 - observed) / n + 1 / (4 * n * n))
    assert low == pytest.approx(centre - half / (1 + 1 / n), abs=1e-12)
    assert high == pytest.approx(centre + half / (1 + 1 / n), abs=1e-12)
    assert 0.0 <= low <= observed <= high <= 1.0
    if observed == 1.0:
        assert (low, high) == (pytest.approx(n / (n + 1)), 1.0)  # the exact bounds at p = 1
    if observed == 0.0:
        assert (low, high) == (0.0, pytest.approx(1 / (n + 1)))


def test_random_heads_overlays_the_untrained_base():
    rng = np.random.default_rng(0)
    trained_body, untrained = rng.uniform(0.1, 0.9, 200), rng.uniform(0.35, 0.65, 200)
    fig = plot_random_heads(trained_body, trained=0.84, untrained=untrained)
    labels = set(fig.axes[0].get_legend_handles_labels()[1])
    assert labels == {"coin flip", "trained head (0.84)", "random heads, trained body", "random heads, untrained base"}
    assert sum(bar.get_height() for c in fig.axes[0].containers for bar in c) == 200  # the trained body's bars
    assert len(fig.axes[0].patches) == 20 + 1  # its 20 bars and the untrained base's outline
    assert fig.axes[0].get_title() == "200 random heads on two bodies' hidden states"


def test_random_heads_without_the_untrained_base():
    fig = plot_random_heads(np.full(10, 0.5))
    assert set(fig.axes[0].get_legend_handles_labels()[1]) == {"coin flip", "random heads"}
