"""The trainer tab's figures (issue 14, fix 13): nothing clipped, a one-step run still drawn."""

from billion.train.events import TrainEvent
from billion.train.tokens import Histogram
from billion.ui.trainer_view import histogram_figure, loss_figure


def test_the_token_histogram_has_headroom_over_its_tallest_bar():
    figure = histogram_figure(Histogram(edges=(0, 32, 64, 96), counts=(5, 40, 3), cutoff=80, over_cutoff=0))
    axes = figure.axes[0]
    bottom, top = axes.get_ylim()
    assert bottom == 0 and top >= 1.2 * 40
    assert max(bar.get_height() for bar in axes.patches) == 40


def test_a_one_step_run_draws_its_loss():
    figure = loss_figure([TrainEvent("train", step=1, max_steps=1, loss=2.5)])
    (line,) = figure.axes[0].get_lines()
    assert list(line.get_xdata()) == [1] and list(line.get_ydata()) == [2.5]
    assert line.get_marker() not in (None, "", "None") and line.get_markersize() > 0
    many = loss_figure([TrainEvent("train", step=s, loss=3.0 - s / 10) for s in range(1, 20)])
    assert many.axes[0].get_lines()[0].get_marker() in (None, "", "None")  # long runs: a plain line
