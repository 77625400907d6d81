"""The dashboard's Pareto chart: points near the front, density layers for the rest, which trials the front
may hold. Figure data is checked against hand computations and a plain scan; the page through AppTest."""

from __future__ import annotations

import numpy as np
import pytest

from dashboards import figures
from dashboards import loading as ld
from explorer.results import pareto

import _studyfactory as factory
from test_dashboard import chart_spec, counts, decode, knobs, rows_of, run_app


def test_detail_mask_keeps_the_front_then_the_points_nearest_below_it():
    # rows 0, 1: the front (1, 10), (3, 20); row 4 sits left of it (gap 0); rows 2 and 5 sit 1 and
    # 1.5 below the front's step (10 at x=2, 20 at x=5); row 3 sits 5 below it
    size = np.array([1.0, 3.0, 2.0, 4.0, 0.5, 5.0])
    acc = np.array([10.0, 20.0, 9.0, 15.0, 5.0, 18.5])
    roles = np.array(["front", "front", "dominated", "dominated", "excluded", "dominated"], dtype=object)
    groups = np.zeros(6)
    drawn = np.ones(6, bool)
    pick = figures.detail_mask(size, acc, roles, groups, drawn, log_x=True, log_y=False, limit=4)
    assert np.flatnonzero(pick).tolist() == [0, 1, 2, 4]
    # on a log accuracy axis row 5 is nearer: log10(20 / 18.5) = 0.034 < log10(10 / 9) = 0.046
    pick = figures.detail_mask(size, acc, roles, groups, drawn, log_x=True, log_y=True, limit=4)
    assert np.flatnonzero(pick).tolist() == [0, 1, 4, 5]
    # the front always, even past the limit; a point not drawn never; everything when few enough
    assert np.flatnonzero(figures.detail_mask(size, acc, roles, groups, drawn, log_x=False, log_y=False,
                                              limit=1)).tolist() == [0, 1]
    drawn[4] = False
    assert not figures.detail_mask(size, acc, roles, groups, drawn, log_x=False, log_y=False, limit=4)[4]
    assert figures.detail_mask(size, acc, roles, groups, drawn, log_x=False, log_y=False,
                               limit=5).tolist() == drawn.tolist()


def test_density_cells_are_uniform_in_the_charts_scale():
    x = np.array([1.0, 5.0, 50.0, 100.0])
    y = np.full(4, 0.5)
    xe, ye = figures.density_grid(x, y, log_x=True, log_y=False, bins=(2, 1))
    assert xe == pytest.approx([1, 10, 100], rel=1e-6)  # decades on a log axis
    counts = figures.density_counts(x, y, xe, ye, log_x=True, log_y=False)
    assert counts.shape == (1, 2) and counts.tolist() == [[2, 2]]
    xe, ye = figures.density_grid(x, y, log_x=False, log_y=False, bins=(2, 1))
    assert xe == pytest.approx([1, 50.5, 100])
    assert figures.density_counts(x, y, xe, ye, log_x=False, log_y=False).tolist() == [[3, 1]]
    xe, ye = figures.density_grid(x, y, log_x=True, log_y=False, bins=(4, 1))
    counts = figures.density_counts(x, y, xe, ye, log_x=True, log_y=False)[0]
    assert counts[[0, 1, 3]].tolist() == [1, 1, 2] and np.isnan(counts[2])  # an empty cell: NaN, drawn clear


def brute_gaps(size, acc, front) -> np.ndarray:
    """The vertical gap of each point below the front's step at its size, by a plain scan (0 left of it)."""
    out = []
    for s, a in zip(size, acc):
        below = [fa for fs, fa in zip(size[front], acc[front]) if fs <= s]
        out.append(max(max(below) - a, 0.0) if below else 0.0)
    return np.array(out)


def test_pareto_data_draws_the_nearest_trials_as_points_and_counts_the_rest(tmp_path):
    storage = factory.make_storage(tmp_path / "big.journal", {"big": 400})
    frame = ld.load_trials(str(storage), "big")
    roles = pareto.classify(frame["params"], frame["val_acc"], frame["infeasible"], np.ones(len(frame), bool),
                            frame["study"])
    traces = figures.pareto_data(frame, roles, "params", "val_acc", log_x=True, detail=50)
    points = np.concatenate([t["rows"] for t in traces if t["kind"] == "points"])
    dense = [t for t in traces if t["kind"] == "density"]
    assert len(points) == 50 and set(np.flatnonzero(roles == "front")) <= set(points)
    assert sorted(points.tolist() + np.concatenate([t["rows"] for t in dense]).tolist()) == list(range(400))
    assert sum(np.nansum(t["counts"]) for t in dense) == 400 - 50
    acc = 100 * frame["val_acc"].to_numpy()
    gaps = brute_gaps(frame["params"].to_numpy(float), acc, roles == "front")
    others = np.setdiff1d(np.arange(400), np.flatnonzero(roles == "front"))
    nearest = others[np.lexsort((others, gaps[others]))][:50 - (roles == "front").sum()]
    assert set(points) - set(np.flatnonzero(roles == "front")) == set(nearest)
    fig, rows = figures.pareto_figure(traces, figures.hover_data(frame, []), "params", "val_acc", log_x=True,
                                      log_y=False, color_col=None, color_kind="none", multi_study=False)
    heat = [d for d in fig["data"] if d["type"] == "heatmap"]
    assert heat and all(d["meta"] == "density" for d in heat) and fig["data"][0]["type"] == "heatmap"  # beneath
    assert {d["type"] for d in fig["data"]} == {"heatmap", "scatter"}  # SVG markers, no WebGL
    assert all(len(r) == 0 for d, r in zip(fig["data"], rows) if d["type"] == "heatmap")


def test_app_draws_a_large_study_as_points_and_density(monkeypatch, tmp_path):
    monkeypatch.setattr(figures, "DETAIL_MAX", 50)
    storage = factory.make_storage(tmp_path / "big.journal", {"big": 400})
    at = run_app(monkeypatch, storage)
    assert not at.exception
    spec = chart_spec(at)
    points = sum(len(rows_of(d)) for d in spec["data"] if d.get("mode") == "markers")
    cells = sum(np.nansum(decode(d["z"])) for d in spec["data"] if d["type"] == "heatmap")
    assert (points, cells) == (50, 350)
    assert any("50 trials nearest the front are drawn as points; the other 350 as density layers" in c.value
               for c in at.caption)


def test_dead_and_diverged_trials_are_off_the_front_unless_the_toggle_shows_them(monkeypatch, tmp_path):
    # #0 (16, 0.10) died at chance: the smallest, so a front point if allowed; #1 (32) diverged (accuracy 0),
    # #2 (64, 0.70) trained: the front of the trainable networks is #2 alone, with #0 allowed #0 and #2
    dead, diverged = factory.trial(0, knobs(16), 0.10), factory.trial(1, knobs(32), 0.0)
    dead.user_attrs["end"], diverged.user_attrs["end"] = "dead", "diverged"
    storage = factory.make_storage(tmp_path / "d.journal", {"d": [dead, diverged, factory.trial(2, knobs(64), 0.70)]})
    at = run_app(monkeypatch, storage)
    assert "**1 on the front**" in counts(at)
    front = next(d for d in chart_spec(at)["data"] if d.get("name") == "Pareto front")
    assert rows_of(front) == [2]
    assert at.checkbox(key="untrainable").label == "Dead and diverged trials on the front (2)"
    at.checkbox(key="untrainable").check().run()
    assert "**2 on the front**" in counts(at)
    assert sorted(r for d in chart_spec(at)["data"] if d.get("name", "").startswith("Pareto front")
                  for r in rows_of(d)) == [0, 2]


def test_the_loading_chart_is_a_valid_blank_plotly_figure():
    """The blank chart a session's first run sends before reading the storage (so Plotly.js loads
    meanwhile): Plotly must accept it, and it must show no trial."""
    import plotly.graph_objects as go

    from dashboards.figures import loading_figure

    fig = go.Figure(loading_figure())  # raises on an invalid property
    assert all(len(t.x) == 0 for t in fig.data)
    assert "Loading" in fig.layout.annotations[0].text
