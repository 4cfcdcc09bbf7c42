"""helpers.plots: the figures draw what their captions say."""

import numpy as np

from helpers.plots import plot_random_heads


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
