"""What a figure shows a reader: plain titles, display names in legends, integer ticks on count
axes, and diverged runs as their own legend entry (never renamed into a colour's label)."""
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from impls import registry  # noqa: E402
from impls.common import display  # noqa: E402
from impls.common.plotting import figure_title, final_figure, line_figure  # noqa: E402
from tests.test_figures import FIGURE, fake_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKING_LABELS = ("?", "[", "inferred", "img_", "unverified", "unknown")


def _figures_by_paper():
    """(paper, target, figure) of every figure of every paper.yaml."""
    for path in sorted(ROOT.glob("papers/*/paper.yaml")):
        for target, fig in yaml.safe_load(path.read_text())["figures"].items():
            yield path.parent.name, target, fig


def _paper_figures():
    return [(target, fig) for _, target, fig in _figures_by_paper()]


def _legend_texts(fig) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def _tick_values(ax, axis="x") -> list[float]:
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    ticks = ax.get_xticks() if axis == "x" else ax.get_yticks()
    return [t for t in ticks if lo <= t <= hi]


def _diverged_marks(ax) -> list[tuple[float, float, float, str]]:
    """The x marks of runs without a final value: (x in data coordinates, x and y on screen, colour)."""
    ax.figure.canvas.draw()
    marks = []
    for c in (c for c in ax.collections if c.get_gid() == "diverged"):
        screen = c.get_offset_transform().transform(c.get_offsets())
        colours = c.get_facecolors()
        colours = colours if len(colours) == len(screen) else [colours[0]] * len(screen)   # one colour for all
        marks += [(x, sx, sy, matplotlib.colors.to_hex(fc)) for (x, _), (sx, sy), fc
                  in zip(c.get_offsets(), screen, colours)]
    return marks


def _screen_y(ax, y: float) -> float:
    return ax.transData.transform([(1.0, y)])[0][1]


def test_every_rule_of_every_paper_has_a_display_name():
    missing = sorted({r.name for r in registry.RULES} - set(display.RULES))
    assert not missing, f"rules without a display name in impls.common.display.RULES: {missing}"


@pytest.mark.parametrize("target,fig", list(_paper_figures()), ids=[t for t, _ in _paper_figures()])
def test_titles_name_the_figure_without_working_labels(target, fig):
    title = figure_title({**fig, "target": target})
    assert title == fig["title"] and title.strip()
    assert not [w for w in WORKING_LABELS if w in title], f"{target}: title {title!r} carries a working label"


def _paper_tables():
    return [(paper, target, fig) for paper, target, fig in _figures_by_paper() if target.startswith("tab_")]


@pytest.mark.parametrize("paper,target,fig", list(_paper_tables()), ids=[t for _, t, _ in _paper_tables()])
def test_a_table_page_is_headed_by_its_title_and_keeps_the_label_in_small_print(paper, target, fig):
    """The HTML page of a table was headed "Fig. 3? (local rules) [recalled, unverified]: ...": its heading
    is the title alone, as an image's is, and the label with its doubts stays in the page's small print."""
    from impls.common.plotting import table_html
    from tests.test_figures import html_page_parts

    drawn, ax = plt.subplots()
    ax.table(cellText=[["BP", "1.0"]], colLabels=["rule", "error"])
    page = table_html(drawn, {**fig, "paper": paper, "target": target, "scale": "smoke", "dataset": "digits"})
    plt.close(drawn)
    heading, meta = html_page_parts(page)
    assert heading == fig["title"], f"{target}: the page is headed {heading!r}"
    assert not [w for w in WORKING_LABELS if w in heading], f"{target}: heading {heading!r} carries a working label"
    assert fig["label"] in meta and target in meta


def test_line_figure_legend_uses_display_names_and_one_diverged_entry():
    fig = line_figure(fake_table(), {**FIGURE, "plot": {"kind": "line", "x": "epoch", "y": "test_acc",
                                                         "hue": "hparams.lr", "style": "rule"}})
    assert fig._suptitle.get_text() == FIGURE["title"]                         # not "Fig. X: test"
    texts = _legend_texts(fig)
    assert {"NP", "SGD", "learning rate", "rule"} <= set(texts)
    assert "np" not in texts and "sgd" not in texts and "lr" not in texts
    assert texts.count("diverged") == 1 and not any("(diverged)" in t for t in texts)
    assert all(float(t).is_integer() for t in _tick_values(fig.axes[0]))      # epochs
    plt.close(fig)


def test_the_diverged_mark_sits_at_the_last_finite_point_of_the_run():
    fig = line_figure(fake_table(), {**FIGURE, "plot": {"kind": "line", "x": "epoch", "y": "test_acc",
                                                         "hue": "hparams.lr", "style": "rule"}})
    marks = [c for c in fig.axes[0].collections if c.get_label() == "diverged"]
    assert len(marks) == 1
    # fake_table: NP at lr 1.0 diverges at epoch 1 (NaN); its last finite point is epoch 0, accuracy 10 + seed
    assert sorted(map(tuple, marks[0].get_offsets().tolist())) == [(0.0, 10.0), (0.0, 11.0)]
    plt.close(fig)


def test_a_rate_where_one_rule_diverged_keeps_its_plain_label_for_the_other():
    """SGD at lr 1.0 finished; only NP diverged there: the colour of lr 1.0 is labelled "1"."""
    fig = line_figure(fake_table(), {**FIGURE, "plot": {"kind": "line", "x": "epoch", "y": "test_acc",
                                                         "hue": "hparams.lr", "style": "rule"}})
    assert "1" in _legend_texts(fig)
    plt.close(fig)


def test_final_figure_over_depth_has_integer_ticks_and_a_diverged_entry():
    runs = fake_table().drop_duplicates("run_id").copy()
    runs["depth"] = runs["lr"].map({0.01: 8, 0.1: 18, 1.0: 34})
    fig = final_figure(runs, {**FIGURE, "plot": {"kind": "final", "x": "model.depth", "y": "final_acc",
                                                 "hue": "rule"}})
    ax = fig.axes[0]
    assert all(float(t).is_integer() for t in _tick_values(ax))
    assert ax.get_xlabel() == "depth"
    texts = _legend_texts(fig)
    assert "diverged" in texts and "NP" in texts and "np" not in texts
    plt.close(fig)


def test_one_depth_gets_one_integer_tick():
    runs = fake_table().drop_duplicates("run_id").copy()
    runs["depth"] = 8
    fig = final_figure(runs, {**FIGURE, "plot": {"kind": "final", "x": "model.depth", "y": "final_acc",
                                                 "hue": "rule"}})
    assert _tick_values(fig.axes[0]) == [8]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["8"]
    plt.close(fig)


def _sweep(diverged: dict) -> pd.DataFrame:
    """Final training error of BP and FA over five learning rates, one seed; ``diverged``: rule -> rates."""
    return pd.DataFrame([{"run_id": f"{rule}-{lr}", "rule": rule, "lr": lr, "seed": 0,
                          "status": "diverged" if lr in diverged.get(rule, ()) else "ok",
                          "best_train_error": np.nan if lr in diverged.get(rule, ()) else 5.0 / lr}
                         for rule in ("bp", "fa") for lr in (0.1, 0.5, 2.0, 5.0, 20.0)])


def test_final_figure_marks_each_diverged_line_in_its_colour_below_the_points():
    """fig_wide_align_lr at cpu scale: every rule diverged at lr 20 and showed as one black x at (20, 0); on
    a log y axis (fig_bpfree_grid) an x at 0 was not drawn at all. Now each line's diverged runs get an x
    in the line's colour below the lowest point, side by side where several lines diverged at one rate."""
    fig = final_figure(_sweep({"bp": [20.0], "fa": [5.0, 20.0]}),
                       {**FIGURE, "plot": {"kind": "final", "x": "hparams.lr", "y": "best_train_error",
                                           "hue": "rule", "logx": True, "logy": True}})
    ax = fig.axes[0]
    fig.canvas.draw()
    legend = {t.get_text(): h for t, h in zip(fig.legends[0].get_texts(), fig.legends[0].legend_handles)}
    colour = {rule: matplotlib.colors.to_hex(legend[rule].get_color()) for rule in ("BP", "FA")}
    assert colour["BP"] != colour["FA"] and "diverged" in legend
    marks = _diverged_marks(ax)
    assert sorted((x, col) for x, _, _, col in marks) == sorted([(5.0, colour["FA"]), (20.0, colour["BP"]),
                                                                 (20.0, colour["FA"])])
    at_20 = [sx for x, sx, _, _ in marks if x == 20.0]
    assert abs(at_20[0] - at_20[1]) > 3                       # side by side, not on top of each other
    points = ax.transData.transform([(lr, 5.0 / lr) for lr in (0.1, 0.5, 2.0, 5.0)])
    bottom = ax.transAxes.transform([(0, 0)])[0][1]
    assert all(bottom < sy < points[:, 1].min() for _, _, sy, _ in marks)    # visible, below every point
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.1", "0.5", "2", "5", "20"]
    plt.close(fig)


def test_a_log_axis_over_many_values_keeps_its_decade_labels():
    runs = pd.concat([_sweep({}), _sweep({}).assign(lr=lambda d: d["lr"] * 1000, run_id=lambda d: d["run_id"] + "k")],
                     ignore_index=True)
    fig = final_figure(runs, {**FIGURE, "plot": {"kind": "final", "x": "hparams.lr", "y": "best_train_error",
                                                 "hue": "rule", "logx": True}})
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert "0.5" not in labels and len(labels) < 10
    plt.close(fig)


def test_display_levels():
    assert display.level("rule", "np_adam") == "NP + Adam"
    assert display.level("rule", "alignada") == "Align-ada"
    assert display.level("model.version", 1) == "v1"
    assert display.level("data.n_train", 45.0) == "45"
    assert display.level("lr", 0.0001) == "0.0001"
    assert display.level("dataset", "fashion_mnist") == "Fashion-MNIST"
    assert display.level("batchnorm", False) == "no" and display.level("erin_sign", np.True_) == "yes"
    assert display.level("batchnorm", "False") == "no"                       # as a CSV gives it back
    assert display.level("arch", "allcnn_a") == "All-CNN-A" and display.level("model.arch", "fc") == "FC"
    assert display.factor("n_train") == "training images" and display.factor("unknown_column") == "unknown_column"


def test_nodepert_sweep_panels_name_rules_and_mark_divergence_in_the_legend():
    from impls.nodepert.figures import sweep_with_boxes

    runs = fake_table().drop_duplicates("run_id").copy()
    runs["n_hl"] = np.where(runs["seed"] == 0, 2, 4)
    fig = sweep_with_boxes(runs, {**FIGURE, "plot": {"x": "hparams.lr", "y": "final_acc", "hue": "model.n_hl",
                                                     "col": "rule"}})
    assert [ax.get_title() for ax in fig.axes[:2]] == ["NP", "SGD"]
    np_legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert np_legend == ["hidden layers 2", "hidden layers 4", "diverged"]
    assert "diverged" not in [t.get_text() for t in fig.axes[1].get_legend().get_texts()]   # SGD: none diverged
    plt.close(fig)


def test_every_table_column_of_every_paper_has_a_display_title():
    """tab_* tables head their columns with display titles, never raw ids like ``final_test_error``."""
    missing = set()
    for target, fig in _paper_figures():
        plot = fig.get("plot", {})
        if plot.get("kind") == "table":
            missing |= {m for m in plot.get("metrics", []) if m not in display.METRICS}
            missing |= {b for b in plot.get("by", []) if b not in display.FACTORS}
    assert not missing, f"table columns without a display title in impls.common.display: {sorted(missing)}"


def test_table_cells_show_rule_names_and_a_dash_where_a_factor_does_not_apply():
    from impls.common.plotting import drawn_tables, table_figure

    table = fake_table()
    table.loc[table["rule"] == "np", "lr"] = np.nan        # a factor that does not apply to NP
    fig = table_figure(table, {**FIGURE, "target": "tab_x", "plot": {"kind": "table", "by": ["rule", "hparams.lr"],
                                                                     "metrics": ["final_acc"]}})
    [(header, rows)] = drawn_tables(fig)
    plt.close(fig)
    assert header[:2] == ["rule", "learning rate"]
    assert {r[0] for r in rows} == {"NP", "SGD"}
    assert [r[1] for r in rows if r[0] == "NP"] == ["—"]


def test_a_log_axis_within_a_decade_is_labelled_with_plain_numbers():
    from impls.common.plotting import plain_log_labels

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [86.6, 87.2, 87.9])
    ax.set_yscale("log")
    plain_log_labels(ax.yaxis)
    fig.canvas.draw()
    lo, hi = ax.get_ylim()
    shown = ax.yaxis.get_majorticklabels() + ax.yaxis.get_minorticklabels()
    labels = [t.get_text() for t in shown if t.get_text() and lo <= t.get_position()[1] <= hi]
    plt.close(fig)
    assert labels and not [t for t in labels if "times" in t or "^" in t], labels
    assert all(86 <= float(t) <= 88 for t in labels), labels


def test_plain_log_labels_of_major_and_minor_ticks_sit_on_one_line():
    """fig_nodepert_crash_timing_sgd (lr 2-20) showed "10" and "20" lower than "2", "3", "4", "6"."""
    from impls.common.plotting import plain_log_labels

    fig, ax = plt.subplots()
    ax.plot([2, 5, 10, 20], [1, 2, 3, 4])
    ax.set_xscale("log")
    plain_log_labels(ax.xaxis)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    lo, hi = ax.get_xlim()
    bottoms = {t.get_text(): round(t.get_window_extent(renderer).y0, 1)
               for t in ax.xaxis.get_majorticklabels() + ax.xaxis.get_minorticklabels()
               if t.get_text() and lo <= t.get_position()[0] <= hi}
    plt.close(fig)
    assert "10" in bottoms and "2" in bottoms and max(bottoms.values()) - min(bottoms.values()) < 0.5, bottoms


def test_stamp_gives_every_narrow_log_axis_plain_labels_and_leaves_integer_ticks_alone():
    from impls.common.plotting import integer_ticks, stamp

    fig, (a, b) = plt.subplots(1, 2)
    a.plot([0.5, 5.0], [1, 2])
    a.set_xscale("log")                                    # learning rates 0.5-5: one decade
    b.plot([8, 64, 512], [1, 2, 3])
    b.set_xscale("log", base=2)
    integer_ticks(b, "x", [8, 64, 512])
    stamp(fig, {**FIGURE, "target": "fig_x"})
    fig.canvas.draw()
    lo, hi = a.get_xlim()
    shown = [t.get_text() for t in a.xaxis.get_majorticklabels() + a.xaxis.get_minorticklabels()
             if t.get_text() and lo <= t.get_position()[0] <= hi]
    widths = [t.get_text() for t in b.xaxis.get_majorticklabels()]
    plt.close(fig)
    assert shown and all("times" not in t and "^" not in t for t in shown), shown
    assert widths == ["8", "64", "512"]


def test_fixed_points_figure_marks_a_diverged_run_and_titles_its_panels_plainly():
    """two_routes' fixed points at cpu scale: IA and AA on data inputs diverge in their first epoch; each
    ends in an x at its last finite point (step 0), and the panels carry no "metric = ..." titles."""
    from impls.two_routes.figures import fixed_points_figure

    rows = []
    for rule, inputs, status in (("wm", "white", "ok"), ("ia", "data", "diverged")):
        for epoch in range(3):
            finite = status == "ok" or epoch == 0
            for metric, value in (("angle", 90.0 / (epoch + 1)), ("fp_error", 2.0 / (epoch + 1))):
                rows.append({"run_id": f"{rule}-{inputs}", "epoch": epoch, "split": "align", "metric": metric,
                             "value": value if finite else np.nan, "rule": rule, "inputs": inputs,
                             "status": status})
    figure = {**FIGURE, "runs": {f"{r}-{i}": {"hparams": {"steps_per_epoch": 100}} for r, i in
                                 (("wm", "white"), ("ia", "data"))}}
    fig = fixed_points_figure(pd.DataFrame(rows), figure)
    for ax, start in zip(fig.axes[:2], (90.0, 2.0)):
        marks = [c for c in ax.collections if c.get_label() == "diverged"]
        assert len(marks) == 1 and marks[0].get_offsets().tolist() == [[0.0, start]]
        assert "=" not in ax.get_title()
    assert _legend_texts(fig).count("diverged") == 1 and "IA" in _legend_texts(fig)
    plt.close(fig)


def test_panels_of_a_faceted_figure_are_titled_by_their_level_alone():
    """fig_nodepert_conv_small at cpu scale read "rule = NP" | "rule = SGD": seaborn's default."""
    for plot in ({"kind": "line", "x": "epoch", "y": "test_acc", "hue": "hparams.lr", "col": "rule"},
                 {"kind": "final", "x": "hparams.lr", "y": "final_acc", "col": "rule"}):
        fig = (line_figure if plot["kind"] == "line" else final_figure)(fake_table(), {**FIGURE, "plot": plot})
        assert [ax.get_title() for ax in fig.axes[:2]] == ["NP", "SGD"], plot["kind"]
        plt.close(fig)


def test_angles_figure_names_its_rows_colours_layers_on_a_bar_and_marks_a_diverged_run():
    """fig_two_routes_angles at smoke scale had raw row titles ("weight_angle | BP"), a legend of
    fractional layer indices (0.0, 1.5, ...) and epochs 0.5, 1.5; at cpu scale AA and IA diverge."""
    from impls.two_routes.figures import ANGLE_ROWS, angles_figure

    rows = []
    for rule, status in (("bp", "ok"), ("aa", "diverged")):
        for layer_index, layer in enumerate(("conv0", "block_group1_0/conv0", "dense")):
            for epoch in range(3):
                finite = status == "ok" or epoch < 2
                for metric in ANGLE_ROWS:
                    rows.append({"run_id": rule, "epoch": epoch, "split": "align", "metric": metric, "layer": layer,
                                 "layer_index": layer_index, "value": 80.0 - 10 * epoch if finite else np.nan,
                                 "rule": rule, "status": status})
    fig = angles_figure(pd.DataFrame(rows), FIGURE)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in panels[:2]] == ["BP", "AA"]
    assert [panels[2 * i].get_ylabel() for i in range(3)] == list(ANGLE_ROWS.values())
    assert all(tick == int(tick) for tick in _tick_values(panels[-1]))
    bar = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"][0]
    assert "0 = stem" in bar.get_ylabel() and "2 = classifier" in bar.get_ylabel()
    for ax, rule_diverged in zip(panels, [False, True] * 3):
        marks = [c for c in ax.collections if c.get_label() == "diverged"]
        assert len(marks) == rule_diverged                     # one mark per panel: last finite points, epoch 1
        if marks:
            assert set(marks[0].get_offsets()[:, 0]) == {1.0}
    assert "diverged" in _legend_texts(fig)
    plt.close(fig)


def test_stability_table_shows_coefficients_as_used_and_dashes_where_they_do_not_apply():
    """fig_two_routes_stability printed "default" for BP's α and "none" as AA's input distribution, and
    sorted the scaled AA above the code default."""
    from impls.two_routes.figures import coefficient_setting, stability_table

    specs = {"bp": {"rule": "bp", "hparams": {}},
             "aa": {"rule": "aa", "hparams": {"alpha": 1e-3, "beta": 2e-3}},
             "aa-scaled": {"rule": "aa", "hparams": {"alpha": 1e-4, "beta": 2e-4}},
             "wm-noise": {"rule": "wm", "hparams": {"input_distribution": "normal"}}}
    finals = {"bp": ("ok", 90.0, None), "aa": ("diverged", np.nan, 1), "aa-scaled": ("ok", 85.0, None),
              "wm-noise": ("ok", 80.0, None)}
    table = pd.DataFrame([{"run_id": rid, "status": s, "final_test_acc": acc, "diverged_epoch": e}
                          for rid, (s, acc, e) in finals.items()])
    fig = stability_table(table, {**FIGURE, "runs": specs})
    (cells,) = fig.axes[0].tables
    text = {(r, c): cell.get_text().get_text() for (r, c), cell in cells.get_celld().items()}
    assert [text[r, 0] for r in range(1, 5)] == ["BP", "AA", "AA", "WM"]       # the grid's order
    assert [text[1, c] for c in range(6)] == ["BP", "—", "—", "—", "—", "—"]
    assert [text[2, c] for c in (1, 2, 3, 4, 5, 6, 7)] == ["code default", "0.001", "0.002", "—", "layer input",
                                                           "—", "1 of 1 (epoch 1)"]
    assert text[3, 1] == "code default × 0.1" and text[3, 6] == "85.0 (n=1)"
    assert text[4, 5] == "N(0, 1) noise" and text[4, 2] == "0.001"        # WM's defaults, as used
    assert coefficient_setting("ia", {"alpha": 2e-3, "beta": 1e-3, "gamma": 5e-3}) == "project"
    plt.close(fig)



def test_two_routes_sweeps_mark_a_diverged_setting_in_its_lines_colour_below_the_points():
    """At cpu scale WM on the true layer inputs and AA at the code defaults diverge: their settings had
    no point at all (the mean of NaN) in fig_two_routes_wm_sensitivity and fig_two_routes_noise."""
    from impls.two_routes.figures import noise_figure, wm_sensitivity_figure

    rows = [{"run_id": "bp", "rule": "bp", "depth": 8, "alpha": "default", "beta": "default",
             "input_distribution": "none", "status": "ok", "final_test_acc": 90.0}]
    for dist in ("none", "normal"):
        for beta in (1e-3, 2e-3):
            bad = dist == "none" and beta == 2e-3
            rows.append({"run_id": f"wm-{dist}-{beta}", "rule": "wm", "depth": 8, "alpha": 1e-3, "beta": beta,
                         "input_distribution": dist, "status": "diverged" if bad else "ok",
                         "final_test_acc": np.nan if bad else 80.0 + 1000 * beta})
    fig = wm_sensitivity_figure(pd.DataFrame(rows), FIGURE)
    ax = fig.axes[0]
    line = [c for c in ax.containers if c.get_label() == "WM, R sees layer input"][0].lines[0]
    ((x, _, y, colour),) = _diverged_marks(ax)
    assert x == 2e-3 / 1e-3 and colour == matplotlib.colors.to_hex(line.get_color())
    assert y < _screen_y(ax, 81.0)                                # below the lowest point
    assert _legend_texts(fig)[-1] == "diverged" and "WM, R sees N(0, 1) noise" in _legend_texts(fig)
    plt.close(fig)

    noise = pd.DataFrame([{"run_id": f"{rule}-{v}", "rule": rule, "noise_var": v,
                           "status": "diverged" if rule == "aa" else "ok",
                           "final_test_acc": np.nan if rule == "aa" else 85.0 - 1000 * v}
                          for rule in ("sa", "aa") for v in (0.0, 1e-3)])
    fig = noise_figure(noise, FIGURE)
    ax = fig.axes[0]
    marks = _diverged_marks(ax)
    assert sorted(x for x, _, _, _ in marks) == [0.0, 1e-3] and all(y < _screen_y(ax, 84.0) for _, _, y, _ in marks)
    assert "AA (every run diverged)" in _legend_texts(fig) and "diverged" in _legend_texts(fig)
    # cpu scale drew a -10⁻⁴ tick left of 0 (a variance is never negative) and cut the last markers at the frame
    lo, hi = ax.get_xlim()
    assert list(ax.get_xticks()) == [0.0, 1e-3] and -1e-3 < lo < 0 and hi > 1e-3 * 2
    plt.close(fig)


def test_wm_sensitivity_panels_keep_their_legends_apart_and_their_last_markers_inside():
    """cpu scale: the two panels' two-column legends ran into each other, and the markers at the largest β/α
    sat on the frame."""
    from impls.two_routes.figures import wm_sensitivity_figure

    rows = [{"run_id": f"bp-{d}", "rule": "bp", "depth": d, "alpha": "default", "beta": "default",
             "input_distribution": "none", "status": "ok", "final_test_acc": 90.0} for d in (8, 20)]
    rows += [{"run_id": f"wm-{d}-{dist}-{beta}", "rule": "wm", "depth": d, "alpha": "default", "beta": beta,
              "input_distribution": dist, "status": "diverged" if dist == "none" else "ok",
              "final_test_acc": np.nan if dist == "none" else 80.0 + 1000 * beta}
             for d in (8, 20) for dist in ("none", "normal") for beta in (5e-4, 1e-3, 2e-3, 4e-3)]
    fig = wm_sensitivity_figure(pd.DataFrame(rows), FIGURE)
    fig.canvas.draw()
    left, right = (ax.get_legend().get_window_extent() for ax in fig.axes)
    assert left.x1 < right.x0, (left, right)
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        assert lo < 0.5 / 1.2 and hi > 4 * 1.2        # ratios 0.5 .. 4 (α 1e-3) with room either side
    plt.close(fig)


def test_a_footer_wider_than_a_narrow_figure_takes_two_lines():
    """fig_two_routes_noise (5 in wide): the one-line footer was wider than the figure, so the saved image
    (bbox "tight") grew to the right and the plot sat in its left half. Now the commits go to a second line."""
    from impls.common.plotting import stamp

    record_like = {**FIGURE, "target": "fig_two_routes_noise", "dataset": "fashion_mnist", "scale": "cpu"}
    for width, lines in ((5.0, 2), (12.0, 1)):
        fig = stamp(plt.figure(figsize=(width, 3.5)), record_like)
        footer = next(t for t in fig.texts if t.get_text().startswith("creditbench "))
        assert footer.get_text().count("\n") + 1 == lines
        assert footer.get_window_extent(fig.canvas.get_renderer()).x1 <= fig.bbox.x1
        plt.close(fig)


def test_pepita_sweeps_mark_a_diverged_level():
    from impls.pepita.figures import sweeps_figure

    rows = [{"run_id": f"{f}-{d}-{s}", "F_scale": f, "depth": d, "erin_sign": s,
             "status": "diverged" if f == 0.5 else "ok", "final_test_acc": np.nan if f == 0.5 else 80.0 + d}
            for f, d, s in ((0.05, 1, False), (0.5, 1, False), (0.05, 2, False), (0.05, 1, True))]
    fig = sweeps_figure(pd.DataFrame(rows), {**FIGURE, "paper": "pepita"})
    ax = fig.axes[0]
    ((x, _, y, _),) = _diverged_marks(ax)
    assert x == 1 and y < _screen_y(ax, 81.0) and "diverged" in _legend_texts(fig)   # level 0.5, position 1
    plt.close(fig)


def test_pepita_slowness_figure_has_integer_epochs_a_readable_table_and_the_curves_colours():
    """tab_pepita_slowness drew its table at a 3-point font beside the panels, epochs 0.5, 1.5, and gave DRTP
    and FA each other's colours from fig_pepita_curves (seaborn's hue order: names sorted)."""
    from impls.common.plotting import drawn_tables
    from impls.pepita.figures import rule_colours, slowness_figure

    rows = [{"rule": rule, "arch": arch, "dataset": "digits", "X": x, "acc": 10 + 30 * x, "fit": 40 * x / (0.2 + x),
             "fitted": True, "s": 0.2, "acc_max": 70.0, "fit_epochs": 3}
            for rule in ("bp", "fa", "drtp", "pepita") for arch in ("fc", "conv") for x in range(3)]
    fig = slowness_figure(pd.DataFrame(rows), {**FIGURE, "paper": "pepita"})
    panels = [ax for ax in fig.axes if ax.get_lines()]
    assert [ax.get_title() for ax in panels] == ["FC net, digits (scikit-learn)", "conv net, digits (scikit-learn)"]
    assert all(t == int(t) for t in _tick_values(panels[0]))
    [(header, cells)] = drawn_tables(fig)
    assert header[3] == "s (epochs)" and len(cells) == 8 and cells[0][:3] == ["FC", "digits (scikit-learn)", "BP"]
    (table,) = [t for ax in fig.axes for t in ax.tables]
    assert min(cell.get_text().get_fontsize() for cell in table.get_celld().values()) >= 8
    drtp = [line for line in panels[0].get_lines() if line.get_label().startswith("DRTP")][0]
    assert drtp.get_color() == rule_colours(["bp", "fa", "drtp", "pepita"])["drtp"]
    assert list(rule_colours(["bp", "fa", "drtp", "pepita"])) == ["bp", "drtp", "fa", "pepita"]
    plt.close(fig)


def test_wide_align_add_figure_writes_its_log_losses_plainly_and_names_the_chance_line():
    """fig_wide_align_add set its log scale after the figure was stamped: losses 9-32 read 2×10¹, 3×10¹,
    and the dashed chance line was not in the legend."""
    from impls.wide_align.figures import add_figure

    rows = [{"run_id": f"{rule}-{width}", "rule": rule, "width": width, "add_targets": "causal", "status": "ok",
             "min_train_loss": loss * (1 if width == 8 else 0.5), "min_test_loss": loss * (1.1 if width == 8 else 0.5)}
            for rule, loss in (("bptt", 17.0), ("readout", 32.0)) for width in (8, 16)]
    fig = add_figure(pd.DataFrame(rows), {**FIGURE, "paper": "wide_align"})
    fig.canvas.draw()
    for ax in fig.axes:
        labels = [t.get_text() for t in ax.yaxis.get_majorticklabels() + ax.yaxis.get_minorticklabels() if t.get_text()]
        assert labels and all("times" not in t and "^" not in t and "×" not in t for t in labels), labels
    assert _legend_texts(fig) == ["BPTT", "readout only", "chance"]   # nothing diverged: no ring entry
    plt.close(fig)


def _wide_align_width_figures():
    return [(target, fig) for paper, target, fig in _figures_by_paper()
            if paper == "wide_align" and fig.get("plot", {}).get("kind", "").endswith(":width_figure")]


@pytest.mark.parametrize("target,fig", _wide_align_width_figures(), ids=[t for t, _ in _wide_align_width_figures()])
def test_a_wide_align_width_figure_caption_places_its_panels_as_they_are_drawn(target, fig):
    """fig_wide_align_width at cpu scale: validation accuracy is drawn above the test accuracy (one column per
    dataset), but its caption put the test set on the "right" and its title said "Validation accuracy"; the
    Align-prop and standard-parameterisation captions did not mention the test panel at all."""
    from impls.wide_align.figures import width_figure

    rows = [{"run_id": f"{rule}-{width}-{dataset}", "rule": rule, "width": width, "depth": 3, "dataset": dataset,
             "lr": 1.0, "status": "ok", "val_acc": 50.0 + width / 8, "final_test_acc": 49.0 + width / 8}
            for rule in ("bp", "alignada") for width in (8, 32) for dataset in ("cifar10", "kmnist")]
    drawn = width_figure(pd.DataFrame(rows), {**FIGURE, "paper": "wide_align"})
    grid = drawn.axes[0].get_subplotspec().get_gridspec()
    assert (grid.nrows, grid.ncols) == (2, 2)                 # rows: metrics; columns: datasets
    assert "val" in drawn.axes[0].get_ylabel() and "test" in drawn.axes[-1].get_ylabel()
    plt.close(drawn)
    caption = " ".join(fig["caption"].split()).lower()
    assert "left" not in caption and "right" not in caption, caption
    top, bottom = caption.index("top:"), caption.index("bottom:")
    assert top < caption.index("validation", top) < bottom < caption.index("test set", bottom), caption
    assert not fig["title"].lower().startswith("validation accuracy"), fig["title"]


def test_wide_align_add_figure_rings_a_run_that_diverged_after_its_best_loss_and_keeps_the_legend_off_the_data():
    """fig_wide_align_add at cpu scale: Align-ada and Align-zero at width 8 diverged (epochs 29 and 53) after
    their best loss, which is the metric and was drawn like any other point; the legend, inside the axes,
    covered the chance line."""
    from impls.wide_align.figures import DIVERGED_LATER_LABEL, add_figure

    rows = [{"run_id": f"{rule}-{width}", "rule": rule, "width": width, "add_targets": "released",
             "status": "diverged" if (rule, width) == ("alignada", 8) else "ok",
             "min_train_loss": 6.6 if rule == "alignada" else 1.4, "min_test_loss": 6.8 if rule == "alignada" else 1.3}
            for rule in ("bptt", "alignada") for width in (8, 64)]
    fig = add_figure(pd.DataFrame(rows), {**FIGURE, "paper": "wide_align"})
    fig.canvas.draw()
    for ax, loss in zip(fig.axes, (6.6, 6.8)):
        (rings,) = [c for c in ax.collections if len(c.get_offsets()) and not c.get_facecolors().any()]
        assert rings.get_offsets().tolist() == [[8.0, loss]]
    assert _legend_texts(fig) == ["BPTT", "Align-ada", "chance", DIVERGED_LATER_LABEL]
    (legend,) = [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legend.get_window_extent().x0 > fig.axes[0].get_window_extent().x1
    plt.close(fig)


def test_final_figure_names_a_rule_whose_every_run_diverged_and_drops_a_one_level_style():
    """fig_two_routes_local at cpu scale: IA and WM diverged at every depth, yet the legend listed them
    like the others (their x marks are black and overlap), and "ResNet version v1" was its own entry."""
    rows = [{"run_id": f"{rule}-{depth}", "rule": rule, "depth": depth, "version": 1,
             "status": "diverged" if rule == "ia" else "ok", "final_test_acc": np.nan if rule == "ia" else 80.0}
            for rule in ("bp", "ia") for depth in (8, 14, 20)]
    fig = final_figure(pd.DataFrame(rows), {**FIGURE, "plot": {"kind": "final", "x": "model.depth",
                                                               "y": "final_test_acc", "hue": "rule",
                                                               "style": "model.version"}})
    texts = _legend_texts(fig)
    assert "IA (every run diverged)" in texts and "BP" in texts and "diverged" in texts
    assert "ResNet version" not in texts and "v1" not in texts
    plt.close(fig)


@pytest.mark.parametrize("rows", [3, 22])
def test_a_table_image_has_no_blank_band_around_its_table(rows):
    """tab_two_routes_accuracy at cpu scale (21 rows) had blank bands above and below its table, and with
    the bands removed the title ran into the header row: the table fills the figure up to a title band."""
    from impls.common.plotting import table_figure

    table = pd.DataFrame([{"run_id": f"r{i}", "rule": "bp", "depth": i, "status": "ok", "final_acc": 90.0}
                          for i in range(rows)])
    fig = table_figure(table, {**FIGURE, "plot": {"kind": "table", "by": ["rule", "depth"], "metrics": ["final_acc"]}})
    fig.canvas.draw()
    (drawn,) = fig.axes[0].tables
    box = drawn.get_window_extent().transformed(fig.transFigure.inverted())
    height = fig.get_figheight()
    assert box.x0 < 0.02 and box.x1 > 0.98 and box.y0 < 0.01
    assert 0.2 < (1 - box.y1) * height < 0.4                       # a title band of 0.3 in, no more
    title = fig._suptitle.get_window_extent().transformed(fig.transFigure.inverted())
    assert title.y0 >= box.y1                                        # the title does not touch the header
    plt.close(fig)


def test_pepita_slowness_with_one_epoch_before_the_decay_is_not_determined(monkeypatch):
    """At cpu scale the conv nets decay after epoch 2: the fit saw chance and epoch 1 only, which puts s at
    the search's lower bound whatever the curve, and the figure printed s = 1e-06 as if it were measured."""
    from impls.common.plotting import drawn_tables
    from impls.pepita import figures as pepita

    runs = [{"run_id": f"{rule}-{arch}", "rule": rule, "arch": arch, "dataset": "fashion_mnist", "split": "test",
             "metric": "acc", "epoch": epoch, "value": 80 * epoch / (0.5 + epoch), "epochs": 4,
             "decay_epochs": decay}
            for rule in ("bp", "pepita") for arch, decay in (("fc", ""), ("conv", "2,3")) for epoch in range(1, 5)]
    monkeypatch.setattr(pepita, "tidy_table", lambda figure, results_dir: pd.DataFrame(runs))
    table = pepita.slowness_table({}, None)
    fitted = table.drop_duplicates(["rule", "arch"]).set_index(["rule", "arch"])
    fc_s = fitted.loc[("bp", "fc"), "s"]
    assert 0.1 < fc_s < 1 and fitted.loc[("bp", "fc"), "fit_epochs"] == 5  # chance + 4 epochs, no decay
    assert fitted.loc[("bp", "conv"), "fit_epochs"] == 2 and np.isnan(fitted.loc[("bp", "conv"), "s"])
    fig = pepita.slowness_figure(table, {**FIGURE, "paper": "pepita"})
    conv = [ax for ax in fig.axes if ax.get_title().startswith("conv")][0]
    assert all(line.get_linestyle() == "--" for line in conv.get_lines())  # data only, no fit line
    legend = [t.get_text() for t in conv.get_legend().get_texts()]
    assert "BP: s not determined" in legend and "fit" not in legend
    [(header, cells)] = drawn_tables(fig)
    conv_bp = [c for c in cells if c[0] == "conv" and c[2] == "BP"][0]
    assert conv_bp[3:] == ["not determined", "—", "2 (too few)"]
    assert [c for c in cells if c[0] == "FC" and c[2] == "BP"][0][3] == f"{fc_s:.3g}"
    plt.close(fig)


def test_architecture_facets_put_fc_before_conv():
    """fig_pepita_curves ("FC and conv") drew conv left of FC: levels were sorted by their ids."""
    table = fake_table().assign(arch=lambda t: np.where(t["seed"] == 0, "fc", "conv"))
    fig = line_figure(table, {**FIGURE, "plot": {"kind": "line", "x": "epoch", "y": "test_acc", "hue": "rule",
                                                 "col": "model.arch"}})
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert [t.split("= ")[-1] for t in titles] == ["FC", "conv"], titles
    assert display.level_order("arch", "fc") < display.level_order("arch", "conv")
    assert display.level_order("lr", 0.01) < display.level_order("lr", 0.1)
    plt.close(fig)


def test_wide_align_lr_marks_every_rule_that_diverged_at_a_rate_inside_the_panel():
    """fig_wide_align_lr at cpu scale: all rules diverged at lr 20, drawn as one black x at (20, 0) on an axis
    labelled 10⁻¹, 10⁰, 10¹. Now an x per rule in its colour, side by side inside the panel, rates as ticks."""
    from impls.wide_align.figures import lr_figure

    rows = [{"run_id": f"{rule}-{lr}", "rule": rule, "width": 8, "lr": lr, "seed": 0,
             "status": "diverged" if lr == 20.0 else "ok", "val_acc": np.nan if lr == 20.0 else 20 + 10 * lr}
            for rule in ("bp", "alignzero", "fa") for lr in (0.1, 0.5, 2.0, 20.0)]
    fig = lr_figure(pd.DataFrame(rows), FIGURE)
    ax = fig.axes[0]
    marks = _diverged_marks(ax)
    legend = ax.get_legend()
    colour = {t.get_text(): matplotlib.colors.to_hex(h.get_color()) for t, h in zip(legend.get_texts(),
                                                                                    legend.legend_handles)}
    assert [c for *_, c in marks] == [colour["BP"], colour["Align-zero"], colour["FA"]]   # legend order
    assert all(x == 20.0 for x, *_ in marks) and "diverged" in colour
    left, right = ax.transAxes.transform([(0, 0), (1, 0)])[:, 0]
    screen_x = [sx for _, sx, _, _ in marks]
    assert left < min(screen_x) and max(screen_x) < right and min(np.diff(screen_x)) > 3
    assert all(y < _screen_y(ax, 21.0) for _, _, y, _ in marks)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.1", "0.5", "2", "20"]
    plt.close(fig)


def _pixels_of(fig, colour: str, tolerance: int = 12) -> int:
    """How many pixels of the rendered figure have ``colour`` (RGB within ``tolerance`` of 255)."""
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    target = np.array(matplotlib.colors.to_rgb(colour)) * 255
    return int((np.abs(rgb - target).max(axis=-1) <= tolerance).sum())


@pytest.mark.parametrize("kind", ["line", "final", "paper"])
def test_a_line_lying_under_a_later_one_shows_as_a_rim(kind):
    """fig_nodepert_conv at cpu scale: NP at lr 5e-5 and 1e-4 both stayed at 10.0 %, and the first line lay
    exactly under the second, invisible. A covered line is drawn wider (more so under two), so its colour shows."""
    rows = []
    for lr, acc in ((1e-5, 10.0), (5e-5, 10.0), (1e-4, 10.0), (5e-4, 30.0)):
        for epoch in range(4):
            value = acc + (epoch * 5 if acc > 10 else 0)
            run_id = f"np-{lr}" if kind == "line" else f"np-{lr}-depth{epoch}"     # final: one run per point
            rows.append(dict(run_id=run_id, epoch=epoch, split="test", metric="acc", value=value, rule="np",
                             lr=lr, seed=0, status="ok", final_acc=value, depth=epoch))
    table = pd.DataFrame(rows)
    if kind == "line":
        fig = line_figure(table, {**FIGURE, "plot": {"kind": "line", "x": "epoch", "y": "test_acc",
                                                     "hue": "hparams.lr"}})
    elif kind == "paper":      # a paper's own figure function (fig_wide_align_width hid BP under Align-zero)
        from impls.common.plotting import stamp

        fig, ax = plt.subplots()
        for _, run in table.groupby("lr"):
            ax.plot(run["epoch"], run["value"], marker="o")
        fig = stamp(fig, FIGURE)
    else:
        fig = final_figure(table, {**FIGURE, "plot": {"kind": "final", "x": "model.depth", "y": "final_acc",
                                                      "hue": "hparams.lr"}})
    ax = fig.axes[0]
    widths = [line.get_linewidth() for line in ax.get_lines() if len(line.get_xdata())]
    assert widths[0] > widths[1] > widths[2] == widths[3], widths          # under two lines, under one, on top
    for line in ax.get_lines()[:4]:                                         # every learning rate can be seen
        assert _pixels_of(fig, line.get_color()) > 300, line.get_label()
    plt.close(fig)


def test_small_and_large_factor_levels_are_written_with_a_plain_exponent():
    """fig_nodepert_conv's legend read "5e-05, 0.0001, 0.0005": Python's padded exponent. Now "5e-5"."""
    assert [display.level("hparams.lr", v) for v in (5e-5, 1e-4, 0.5, 1.5e-7, 1e6, 3.0)] == \
        ["5e-5", "0.0001", "0.5", "1.5e-7", "1e6", "3"]
    table = fake_table().assign(lr=lambda t: t["lr"] * 1e-3)
    fig = line_figure(table, {**FIGURE, "plot": {"kind": "line", "x": "epoch", "y": "test_acc", "hue": "hparams.lr"}})
    assert "1e-5" in _legend_texts(fig) and not [t for t in _legend_texts(fig) if "e-0" in t]
    plt.close(fig)
