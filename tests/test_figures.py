"""The figures (analysis/present/plots.py, style.py): a row keeps its colour and marker whatever rows are beside it,
every row of the cost plot is visible and labelled apart from the others, epochs are whole, a band is drawn only
where there are seeds to make it, and every figure comes as PNG, PDF and SVG at a paper's column width."""
import itertools

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex

from analysis.paper.shipped import results_dir
from analysis.present.plots import cost_unit, curves_figure, forest_figure, pareto_front, tradeoff_figure, write_plots
from analysis.runs.local import load_runs
from analysis.stats.ablation import analyse
from analysis.stats.sequential import Design
from src.plot_style import COLUMN_WIDTH, FUSIONS, figure_order, row_style


@pytest.fixture(scope="module")
def fusion_runs():
    return load_runs([results_dir("fusion")], warn=lambda message: None).runs


def fusion_ablation(runs, rows=None):
    runs = runs if rows is None else runs[runs["fusion"].isin(rows)]
    return runs, analyse(runs, ["fusion"], ref="cross", margin=0.5, design=Design(max_seeds=25, looks=(6, 13)))


def drawn(figure) -> None:
    FigureCanvasAgg(figure).draw()


def label_colours(figure) -> dict:
    """The colour of each row's label in a cost plot, by the label's text."""
    return {text.get_text().split(" ")[0]: to_hex(text.get_color()) for text in figure.axes[0].texts if text.get_text()
            and not text.get_text().startswith("*")}


def line_colours(figure) -> dict:
    """The colour of each row's curve, by its legend name (the row's label)."""
    return {line.get_label().split(" ")[0]: to_hex(line.get_color()) for line in figure.axes[0].lines
            if not line.get_label().startswith("_")}


def test_a_fusion_keeps_its_colour_and_marker_whatever_rows_are_beside_it(fusion_runs):
    full_runs, full = fusion_ablation(fusion_runs)
    two_runs, two = fusion_ablation(fusion_runs, ["cross", "none"])
    for figure_of in (lambda ablation: tradeoff_figure(ablation, "gmacs"), lambda ablation: tradeoff_figure(
            ablation, "params_m")):
        first, second = figure_of(full), figure_of(two)
        drawn(first), drawn(second)
        assert label_colours(first)["cross"] == label_colours(second)["cross"] == FUSIONS["cross"].color.lower()
        assert label_colours(first)["none"] == label_colours(second)["none"] == FUSIONS["none"].color.lower()
    curves_full, curves_two = line_colours(curves_figure(full_runs, full)), line_colours(curves_figure(two_runs, two))
    assert curves_full["cross"] == curves_two["cross"] == FUSIONS["cross"].color.lower()
    assert len(set(curves_full.values())) == len(curves_full) == 6  # six rows, six colours
    assert row_style("fusion=cross") == row_style("cross")
    assert row_style("8/16") != row_style("4/16")  # other labels: by a hash of the name, not by position


def test_figure_order_is_the_reference_then_by_effect(fusion_runs):
    _, ablation = fusion_ablation(fusion_runs)
    labels = list(ablation.table.loc[figure_order(ablation.table), "label"])
    assert labels == ["cross", "gated_cross", "none", "pairwise", "all_attn_residual", "cls_token"]
    forest = forest_figure(ablation)
    drawn(forest)
    assert [tick.get_text() for tick in forest.axes[0].get_yticklabels()] == labels
    verdicts = [text.get_text() for text in forest.axes[0].texts]
    assert verdicts == ["reference", "better", "better", "better", "inconclusive", "inconclusive"]
    assert any("equivalence margin ±0.5" in text.get_text() for text in forest.axes[0].get_legend().get_texts())


def test_every_row_of_the_cost_plot_is_visible_and_labelled_apart(fusion_runs):
    _, ablation = fusion_ablation(fusion_runs)
    for column in ("gmacs", "params_m"):
        figure = tradeoff_figure(ablation, column)
        drawn(figure)
        renderer = figure.canvas.get_renderer()
        axes = figure.axes[0]
        labels = [text for text in axes.texts if text.get_text() and not text.get_text().startswith("*")]
        assert len(labels) == 6
        boxes = [text.get_window_extent(renderer) for text in labels]
        for (a, box_a), (b, box_b) in itertools.combinations(zip(labels, boxes), 2):
            assert not box_a.overlaps(box_b), (column, a.get_text(), b.get_text())
        points = [axes.transData.transform((line.get_xdata()[0], line.get_ydata()[0])) for line in axes.lines
                  if line.get_marker() not in ("None", "", None, "_", "|") and len(line.get_xdata()) == 1]
        assert len(points) == 6
        for first, second in itertools.combinations(points, 2):
            assert np.hypot(*(first - second)) > 4, column  # no marker on top of another (cls_token, pairwise)
    assert cost_unit(ablation.table["gmacs"], "gmacs") == (1e3, "FLOPs (M multiply-accumulates)")
    assert cost_unit(ablation.table["gmacs"] * 1e3, "gmacs")[1] == "FLOPs (G multiply-accumulates)"


def test_the_pareto_front_keeps_the_rows_no_cheaper_row_beats():
    import pandas as pd
    cost, top1 = pd.Series([1.0, 2.0, 3.0, 4.0]), pd.Series([90.0, 89.0, 92.0, 91.0])
    assert pareto_front(cost, top1) == [0, 2]


def test_epochs_are_whole_and_a_band_needs_seeds(fusion_runs):
    one_seed = fusion_runs[fusion_runs["seed"] == 0].copy()
    one_seed["history"] = [history[:3] for history in one_seed["history"]]  # a three-epoch run
    runs, ablation = fusion_ablation(one_seed)
    figure = curves_figure(runs, ablation)
    drawn(figure)
    ticks = [tick for tick in figure.axes[0].get_xticks() if 1 <= tick <= 3]
    assert ticks and all(float(tick).is_integer() for tick in ticks)
    assert not [child for child in figure.axes[0].get_children() if isinstance(child, PolyCollection)]
    assert "mean over seeds" not in figure.axes[0].get_ylabel()
    assert "no band" in figure.legends[0].get_title().get_text()
    full_runs, full = fusion_ablation(fusion_runs)
    banded = curves_figure(full_runs, full)
    drawn(banded)
    assert [child for child in banded.axes[0].get_children() if isinstance(child, PolyCollection)]
    assert "95% CI of the mean" in banded.legends[0].get_title().get_text()
    assert banded.axes[1].get_title() == "last 4 epochs" and banded.axes[1].get_xlim()[0] > 8


def test_every_figure_is_png_pdf_and_svg_at_a_column_width(fusion_runs, tmp_path):
    runs, ablation = fusion_ablation(fusion_runs)
    written = write_plots(runs, ablation, tmp_path)
    assert list(written) == ["forest", "top1_vs_gflops", "top1_vs_params", "val_curves"]
    for paths in written.values():
        assert [path.suffix for path in paths] == [".png", ".pdf", ".svg"]
        assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"
        assert "<svg" in paths[2].read_text()
    assert forest_figure(ablation).get_size_inches()[0] == pytest.approx(COLUMN_WIDTH)
    assert tradeoff_figure(ablation, "gmacs").get_size_inches()[0] == pytest.approx(COLUMN_WIDTH)


def test_the_fusion_cost_benchmark_draws_each_fusion_in_its_colour(tmp_path):
    """src.bench.fusion_cost's plot (the fusion_complexity notebook) uses the same style table as the analysis."""
    import pandas as pd

    from src.bench.fusion_cost import plot_costs
    costs = pd.DataFrame([{"fusion": fusion, "tokens": tokens, "gmacs": tokens * scale, "time_ms": tokens * scale}
                          for fusion, scale in (("cross", 1.0), ("all_attn", 3.0)) for tokens in (10, 100)])
    fitted = pd.DataFrame({"fusion": ["cross", "all_attn"], "gmacs_slope": [1.0, 1.0], "time_ms_slope": [1.0, 1.0]})
    paths = plot_costs(costs, fitted, tmp_path)
    assert [path.suffix for path in paths] == [".png", ".pdf", ".svg"]
    svg = paths[2].read_text().lower()
    assert FUSIONS["cross"].color.lower() in svg and FUSIONS["all_attn"].color.lower() in svg
