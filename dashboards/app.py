"""The explorer dashboard: browse studies' accuracy-vs-size Pareto fronts (Streamlit).

Run with `explorer dashboard --storage PATH.journal` (or `streamlit run dashboards/app.py
-- --storage URL`; the EXPLORER_STORAGE variable also works). Computation lives in
explorer.results.pareto, dashboards.figures and dashboards.exports; this file only draws.
Storage access is read-only (see dashboards.loading).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # `streamlit run dashboards/app.py` puts dashboards/ on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd
import streamlit as st

from dashboards import exports, figures
from dashboards import fidelity as fidelity_view
from dashboards import int8 as int8_view
from dashboards import landscape as landscape_view
from dashboards import loading as ld
from explorer.core.errors import UserError
from explorer.design.budgets import STUDY_BUDGETS
from explorer.results import importance, pareto
from explorer.store.table import comparable, latency_settings, untrainable

STATE_SELECTED = "selected_trials"  # list of (study, number) picked on the chart
STATE_FILTERS = "_budgets_filters"  # {"limits": {cost: max}, "ranges": {knob: rule}} set in the sidebar
NO_LIMIT = "no limit"
LIMIT_LABELS = {"params": "Max parameters", "macs": "Max MACs", "size_mb": "Max size (MB)",
                "latency_ms": "Max latency (ms)"}


def default_storage() -> str:
    """--storage after `--` on the command line, else $EXPLORER_STORAGE, else ''."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--storage", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.storage or os.environ.get("EXPLORER_STORAGE", "")


@st.cache_resource(show_spinner=False, max_entries=4)
def get_storage(url: str):
    """One open storage per URL; a journal replays only new lines on later reads."""
    return ld.open_storage(url)


@st.cache_data(show_spinner=False, ttl=2, max_entries=16)
def get_studies(url: str) -> pd.DataFrame:
    """The storage's studies (one query for the trial counts on a database)."""
    return ld.list_studies(get_storage(url))


@st.cache_data(show_spinner=False, ttl=2, max_entries=16)
def get_fingerprints(url: str, studies: tuple[str, ...]) -> tuple:
    """The studies' fingerprints (one query each on a database; milliseconds)."""
    storage = get_storage(url)
    return tuple(ld.study_fingerprint(storage, s) for s in studies)


def read_once(key: str, ident: tuple, read):
    """`read()` once per browser session and `ident` (URL, chosen studies): a widget change reruns
    the page without touching the storage; Refresh, auto-refresh or a new page load read again."""
    memo = st.session_state.setdefault("_read_once", {})
    if key not in memo or memo[key][0] != ident:
        with st.spinner("Reading the storage…"):
            memo[key] = (ident, read())
    return memo[key][1]


@st.cache_resource(show_spinner="Loading trials…", max_entries=6)
def get_trials(url: str, studies: tuple[str, ...],
               fingerprints: tuple) -> tuple[pd.DataFrame, figures.Hover, dict, dict]:
    """Trials, hover labels, varied knobs' filter choices and the studies as read (name -> StudyRecord),
    cached until a fingerprint changes.

    cache_resource, not cache_data: the frame is never mutated, and cache_data would
    unpickle it on every rerun (about 0.1 s at 10,000 trials, the whole rerun budget).
    """
    records = ld.load_records(get_storage(url), list(studies))
    frame = ld.records_table(records)
    knobs = ld.knob_columns(frame)
    return (frame, figures.hover_data(frame, knobs), {k: knob_choices(frame[k]) for k in knobs},
            {rec.name: rec for rec in records})


def knob_choices(values: pd.Series) -> tuple:
    """('range', lo, hi) for a continuous knob, else ('set', sorted distinct values)."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and values.nunique() > 12:
        return ("range", float(values.min()), float(values.max()))
    return ("set", sorted(values.dropna().unique().tolist(), key=lambda v: figures._natural(str(v))))


@st.cache_resource(show_spinner="Computing importances…", max_entries=4)
def get_importances(url: str, studies: tuple[str, ...], fingerprints: tuple, study: str,
                    acc_col: str) -> dict[str, float]:
    """Optuna's parameter importances for reaching high accuracy, from the trials the page already
    read (explorer.results.importance; no second read of the storage)."""
    rec = get_trials(url, studies, fingerprints)[3][study]
    return importance.importances(rec.frozen_trials, acc_col, rec.directions)


def main() -> None:
    """The page. A session's first run puts a blank chart where the page will be before it reads the
    storage: Plotly.js loads in the browser only once a chart arrives, and this way it loads while the
    server reads (0.5 s of a second session's 3 s first chart on the 2-core machine). Later runs hold
    the page in a plain container at the same place: an st.empty() there would replace the page
    with an empty element on every rerun and remount the chart."""
    st.set_page_config(page_title="SqueezeNet design-space explorer", layout="wide")
    first = not st.session_state.get("_page_once")
    st.session_state["_page_once"] = True
    if first:
        slot = st.empty()
        slot.plotly_chart(figures.loading_figure(), config={"staticPlot": True, "displayModeBar": False})
        body = slot.container  # called once the view is ready: it replaces the blank chart
    else:
        ready = st.container()
        body = lambda: ready  # noqa: E731
    if not page(body) and first:
        slot.empty()  # nothing to draw (no storage, no trials, an error): the message stands alone


def page(body) -> bool:
    """Everything but the loading chart; the studies' view goes into the container `body()` returns.
    False when the page ended early with a message."""
    given = default_storage()
    # The box shows the URL masked (the page must not reveal a password); left as shown,
    # it stands for the URL the dashboard was started with.
    typed = st.sidebar.text_input("Storage (journal path or sqlite:/// URL)", value=ld.mask_url(given),
                                  key="storage")
    url = given if typed == ld.mask_url(given) else typed.strip()
    st.sidebar.caption(f"Reading {ld.mask_url(url)} read-only." if url else "")
    if st.sidebar.button("Refresh", help="Reload trials from the storage"):
        # the open storage stays: a journal replays only its new lines, a database is re-queried
        for cached in (get_studies, get_fingerprints):
            cached.clear()
        st.session_state.pop("_read_once", None)
    if not url:
        st.info("No storage given. Start with `explorer dashboard --storage PATH.journal`, "
                "or type a journal path or sqlite:/// URL in the sidebar.")
        return
    try:
        studies = read_once("studies", (url,), lambda: get_studies(url))
    except ld.StorageError as exc:
        st.error(str(exc))
        return
    except Exception as exc:  # e.g. a corrupt journal line or a database error while listing
        st.error(f"Could not list the studies in {ld.mask_url(url)}: {ld.mask_url(str(exc), url)[:300]}")
        return
    for note in ld.skipped_lines(get_storage(url)):  # a damaged journal: say which lines are not shown
        st.warning(note)
    if studies.empty:
        st.info(f"The storage {ld.mask_url(url)} holds no studies yet. Run `explorer run STUDY.yaml` "
                "to create one, then press Refresh.")
        return
    names = studies["study"].tolist()
    asked = [n for n in st.query_params.get_all("study") if n in names]  # a link may name the studies
    chosen = st.sidebar.multiselect("Studies (several are overlaid)", names, default=asked or names[-1:],
                                    key="studies")
    if not chosen:
        st.info("Pick at least one study in the sidebar.")
        return
    try:
        fps = read_once("fingerprints", (url, tuple(chosen)), lambda: get_fingerprints(url, tuple(chosen)))
        frame, hover, knob_meta, _ = get_trials(url, tuple(chosen), fps)
        knobs = list(knob_meta)
    except Exception as exc:  # a storage changing under us must not end in a traceback
        st.session_state.pop("_read_once", None)
        get_storage.clear()  # open it afresh on the next try
        st.error(f"Could not read the studies: {ld.mask_url(str(exc), url)}")
        return
    auto_refresh(url, tuple(chosen), fps)
    objectives = ld.objective_columns(frame)
    plain = frame["val_acc"].notna().sum() == 0 and any(frame[c].notna().any() for c in objectives)
    if frame.empty or (frame["val_acc"].notna().sum() == 0 and not plain):
        st.info(f"No trial with a validation accuracy yet in {', '.join(chosen)} "
                f"({len(frame)} trials stored). Press Refresh once trials complete.")
        if not frame.empty:
            st.dataframe(frame[["study", "number", "state", "end", "over_budget"]], hide_index=True)
        st.subheader("What the space holds")
        landscape_view.show(get_storage(url), chosen, frame)  # needs only the stored config
        return
    with body():
        st.title("SqueezeNet design space: accuracy vs size" if not plain else "Optuna study: objectives and front")
        st.caption(f"{', '.join(chosen)} · {len(frame)} trials · storage {ld.mask_url(url)} (read-only)")
        if plain:
            st.caption("A plain Optuna study: its own objectives and front are shown; the per-layer cost table, "
                       "costs, budgets and config exports need explorer's attributes (a study run by `explorer run`).")
        view = controls(frame, knobs, objectives if plain else {})
        allowed = budgets_and_filters(frame, knob_meta)
        # the front maximises accuracy and minimises size: flip the objectives Optuna maximises / minimises
        size = frame[view["size"]].to_numpy(dtype=float) * (-1 if view["dirs"][0] == "maximize" else 1)
        acc = frame[view["acc"]].to_numpy(dtype=float) * (-1 if view["dirs"][1] == "minimize" else 1)
        # cut by the time budget, pruned or a duplicate: never on a front; dead or diverged: unless asked
        final = comparable(frame, untrainable=view["untrainable"])
        roles = pareto.classify(size, acc, frame["infeasible"].to_numpy(), allowed,
                                frame["study"].to_numpy(), final)
        tabs = st.tabs(["Pareto front", "Trial detail", "Design space", "Feasible front & export",
                        "Space landscape", "Fidelity"], key="view", on_change="rerun")
        if tabs[0].open:
            with tabs[0]:
                pareto_tab(frame, hover, roles, view, len(chosen) > 1)
        if tabs[1].open:
            with tabs[1]:
                detail_tab(frame, roles, view, url)
        if tabs[2].open:
            with tabs[2]:
                design_space_tab(frame, knobs, view, url, chosen, fps)
        if tabs[3].open:
            with tabs[3]:
                export_tab(frame, roles, knobs, view, url)
        if tabs[4].open:
            with tabs[4]:
                landscape_view.show(get_storage(url), chosen, frame)
        if tabs[5].open:
            with tabs[5]:
                fidelity_view.show(get_storage(url), chosen)
    return True


def auto_refresh(url: str, studies: tuple[str, ...], fps: tuple) -> None:
    """While on, poll the studies' fingerprints and rerun the page when one changes."""
    every = st.sidebar.toggle("Auto-refresh while a study runs", key="auto_refresh")
    if not every:
        return

    @st.fragment(run_every=10)
    def poll() -> None:
        try:  # one query per study on a database, new lines only on a journal
            now = tuple(ld.study_fingerprint(get_storage(url), s) for s in studies)
        except Exception:  # a half-written storage: try again on the next tick
            return
        if now != fps:
            st.session_state.get("_read_once", {}).pop("fingerprints", None)
            st.rerun(scope="app")

    poll()


def controls(frame: pd.DataFrame, knobs: list[str], objectives: dict[str, str]) -> dict:
    """Axis, scale and colour choices (sidebar); `objectives` (column -> direction) for a plain
    Optuna study, whose own objectives (and the trial number) are the axes."""
    sb = st.sidebar
    if objectives:
        have = [c for c in objectives if frame[c].notna().any()]
        dirs = {"number": "minimize", **objectives}
        label = lambda c: f"{figures.axis_title(c, {})} ({dirs[c].removesuffix('e')}ed)"  # noqa: E731
        xs = have[1:] + have[:1] + ["number"] if len(have) > 1 else ["number", *have]  # 1 objective: vs trials
        view = {"size": sb.selectbox("X axis", xs, format_func=label, key="size_axis"),
                "acc": sb.selectbox("Y axis", have, format_func=label, key="acc_axis"),
                "log_x": sb.checkbox("Log x axis", value=False, key="log_x_plain"),
                "log_y": sb.checkbox("Log y axis", value=False, key="log_y")}
        view["dirs"] = (dirs[view["size"]], dirs[view["acc"]])
    else:
        sizes = [c for c in figures.SIZE_AXES if frame[c].notna().any()]
        accs = [c for c in figures.ACC_AXES if frame[c].notna().any()]
        view = {
            "size": sb.selectbox("Size axis", sizes, format_func=figures.SIZE_AXES.get, key="size_axis"),
            "acc": sb.selectbox("Accuracy", accs, format_func=figures.ACC_AXES.get, key="acc_axis"),
            "log_x": sb.checkbox("Log size axis", value=True, key="log_x"),
            "log_y": sb.checkbox("Log accuracy axis", value=False, key="log_y"),
            "dirs": ("minimize", "maximize"),
        }
    options = ["(none)", "study"] + knobs
    view["color"] = sb.selectbox("Colour by", options, key="color_by",
                                 format_func=lambda c: c.removeprefix("knob_"))
    if view["color"] == "(none)":
        view["color"] = None
    dead = int(untrainable(frame).sum())
    view["untrainable"] = dead > 0 and sb.checkbox(
        f"Dead and diverged trials on the front ({dead})", value=False, key="untrainable",
        help="A network that ended dead (every output 0: chance accuracy) or diverged (a non-finite loss) could "
             "not train, so it is no trade-off and is kept off the front (as `explorer status` and `explorer "
             "export` do). Tick to let these trials compete.")
    return view


def _limit_options(values: np.ndarray) -> list:
    """About 40 log-spaced candidate limits between the smallest and largest value."""
    v = values[np.isfinite(values) & (values > 0)]
    if v.size == 0:
        return [NO_LIMIT]
    grid = np.unique([float(f"{x:.3g}") for x in np.geomspace(v.min(), v.max(), 40)])
    return [*grid.tolist(), NO_LIMIT]


def budgets_and_filters(frame: pd.DataFrame, knob_meta: dict) -> np.ndarray:
    """Budget sliders and knob filters (sidebar); True where a trial passes them all.

    The expander draws its widgets only while open: a collapsed one costs the browser nothing (its
    sliders and filters were a sixth of the first chart's time, bench/dashboard_profile.py). What was
    set is kept in the session and applies while it is closed, and a caption says so.
    """
    saved = st.session_state.setdefault(STATE_FILTERS, {"limits": {}, "ranges": {}})
    box = st.sidebar.expander("Budgets and filters", key="filters_open", on_change="rerun")
    if box.open:
        with box:
            saved["limits"] = {c: v for c, v in ((c, _budget_slider(frame, c, saved["limits"].get(c)))
                                                 for c in STUDY_BUDGETS) if v is not None}
            saved["ranges"] = {k: r for knob, meta in knob_meta.items()
                               for k, r in _knob_filter(knob, meta, saved["ranges"].get(knob)).items()}
    limits = {c: v for c, v in saved["limits"].items() if c in frame}
    ranges = {k: r for k, r in saved["ranges"].items() if k in frame}
    if not box.open and (limits or ranges):
        st.sidebar.caption("Applied: " + "; ".join(
            [f"{c} <= {figures.fmt_count(v)}" for c, v in limits.items()]
            + [f"{k.removeprefix('knob_')} in {_rule_text(r)}" for k, r in ranges.items()]))
    mask = pareto.budget_mask({c: frame[c] for c in limits}, limits) if limits else np.ones(len(frame), bool)
    return mask & pareto.filter_mask(frame, ranges)


def _budget_slider(frame: pd.DataFrame, col: str, saved: float | None) -> float | None:
    """A study budget's slider (where the trials hold the cost); the limit chosen, None for none."""
    options = _limit_options(frame[col].to_numpy(dtype=float))
    if len(options) == 1:
        return None
    if saved is not None and saved not in options:  # set on other studies: kept as it was
        options = sorted(options[:-1] + [saved]) + [NO_LIMIT]
    chosen = st.select_slider(LIMIT_LABELS[col], options, value=NO_LIMIT if saved is None else saved,
                              key=f"max_{col}", format_func=lambda x: x if x == NO_LIMIT else figures.fmt_count(x))
    return None if chosen == NO_LIMIT else float(chosen)


def _knob_filter(knob: str, meta: tuple, saved) -> dict:
    """A knob's range slider or choice filter; {knob: rule} when it leaves trials out, else {}."""
    label = knob.removeprefix("knob_")
    if meta[0] == "range":
        lo, hi = meta[1], meta[2]
        start = (max(lo, min(saved[0], hi)), min(hi, max(saved[1], lo))) if saved else (lo, hi)
        chosen = st.slider(label, lo, hi, start, key=f"range_{knob}")
        return {} if tuple(chosen) == (lo, hi) else {knob: tuple(chosen)}
    options = meta[1]
    kept = [o for o in options if o in saved] if saved is not None else options
    chosen = st.multiselect(label, options, default=kept, key=f"filter_{knob}")
    return {} if len(chosen) == len(options) else {knob: chosen}


def _rule_text(rule) -> str:
    """'[0.25, 0.5]' for a range, '{none, simple}' for a set of choices."""
    if isinstance(rule, tuple):
        return f"[{rule[0]:.4g}, {rule[1]:.4g}]"
    return "{" + ", ".join(map(str, rule)) + "}"


def _remember_selection() -> None:
    """on_select callback: turn the chart's selection into (study, number) keys."""
    event = st.session_state.get("pareto_chart")
    rows = pareto.selected_rows(event["selection"]["points"] if event else [],
                                st.session_state.get("_trace_rows", []))
    studies, numbers = st.session_state["_row_keys"]
    st.session_state[STATE_SELECTED] = [(str(studies[r]), int(numbers[r])) for r in rows
                                        if 0 <= r < len(numbers)]


def selected_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of the trials picked on the chart (possibly none)."""
    keys = st.session_state.get(STATE_SELECTED) or []
    if not keys:
        return frame.iloc[0:0]
    wanted = pd.MultiIndex.from_tuples(keys)
    have = pd.MultiIndex.from_arrays([frame["study"].astype(str), frame["number"]])
    return frame[have.isin(wanted)]


def pareto_tab(frame, hover, roles, view, multi) -> None:
    """The accuracy-vs-size chart with the front highlighted; selection -> trial keys."""
    color_kind = "none"
    if view["color"]:
        color_kind = figures.color_values(frame[view["color"]])[0]
    traces = figures.pareto_data(frame, roles, view["size"], view["acc"], view["color"],
                                 log_x=view["log_x"], log_y=view["log_y"])
    fig, trace_rows = figures.pareto_figure(
        traces, hover, view["size"], view["acc"], log_x=view["log_x"], log_y=view["log_y"],
        color_col=view["color"], color_kind=color_kind, multi_study=multi)
    st.session_state["_trace_rows"] = trace_rows
    st.session_state["_row_keys"] = (frame["study"].to_numpy(), frame["number"].to_numpy())
    st.markdown(figures.counts_line(frame, roles))
    rungs = figures.rung_caption(frame)
    if rungs:
        st.caption(rungs)
    st.plotly_chart(fig, key="pareto_chart", on_select=_remember_selection,
                    selection_mode=("points", "box", "lasso"), config={"displaylogo": False})
    settings = latency_settings(frame) if view["size"] == "latency_ms" else {}
    if len(settings) > 1:  # never compare latencies of different settings without saying so
        st.warning(f"These latencies were measured on {len(settings)} different settings and do not compare "
                   "across them: " + "; ".join(f"{k} ({len(v)} trials)" for k, v in settings.items()))
    elif settings:
        st.caption(f"Latency: median ms per forward pass on {next(iter(settings))}.")
    dense = sum(len(t["rows"]) for t in traces if t["kind"] == "density")
    if dense:
        st.caption(f"{sum(len(t['rows']) for t in traces if t['kind'] == 'points'):,} trials nearest the front are "
                   f"drawn as points; the other {dense:,} as density layers (darker cells hold more trials; hover a "
                   "cell for its count). Budgets and filters move trials between the two.")
    picked = selected_frame(frame)
    if len(picked):
        st.caption(f"{len(picked)} trial(s) selected: see Trial detail, or export them in "
                   "Feasible front & export.")
    else:
        st.caption("Click, box- or lasso-select points to pick trials. Trials the study's "
                   "budget rejected were never trained: they sit on a strip below the lowest accuracy.")


def detail_tab(frame, roles, view, url) -> None:
    """One trial: knobs, spec, per-layer cost table, learning curve, timings, downloads."""
    picked = selected_frame(frame)
    source = "selected" if len(picked) else "on the front"
    if not len(picked):
        picked = frame[roles == "front"].sort_values(view["size"])
    ids = picked.index.tolist()
    if not ids:
        st.info("No trial selected and none on the front. Select points on the Pareto chart.")
        return
    row_id = st.selectbox(f"Trial ({len(ids)} {source})", ids, key="detail_trial",
                          format_func=lambda i: f"{frame.at[i, 'study']} #{frame.at[i, 'number']} — "
                                                f"{_axis_value(frame, i, view['acc'])}, "
                                                f"{_axis_value(frame, i, view['size'])}")
    row = frame.loc[row_id if row_id in frame.index else ids[0]]
    st.subheader(f"{row['study']} · trial #{row['number']} "
                 f"({row['state'].lower()}, end: {row['end'] or 'n/a'})")
    m = st.columns(6)
    m[0].metric("val acc", _fmt(100 * row["val_acc"], "{:.2f}%"),
                help=None if pd.isna(row["acc_std"]) else f"seed noise ± {100 * row['acc_std']:.2f} points")
    m[1].metric("best val acc", _fmt(100 * row["best_val_acc"], "{:.2f}%"))
    m[2].metric("parameters", figures.fmt_count(row["params"]))
    m[3].metric("MACs", figures.fmt_count(row["macs"]))
    m[4].metric("size (MB, fp32)", _fmt(row["size_mb"], "{:.3g}"), help=f"{_fmt(row['size_mib'], '{:.4g}')} MiB")
    m[5].metric("latency (ms)", _fmt(row["latency_ms"], "{:.3g}"))
    left, right = st.columns(2)
    with left:
        st.markdown("**Knobs**")
        knobs = {k.removeprefix("knob_"): row[k] for k in frame.columns if k.startswith("knob_")}
        st.dataframe(pd.DataFrame({"knob": list(knobs), "value": [_show(v) for v in knobs.values()]}),
                     hide_index=True)
        st.markdown("**Timings and provenance**")
        fields = ("train_seconds", "images_per_s", "duration_s", "seed", "device", "latency_setting",
                  "spec_id", "duplicate_of", "over_budget", "rung", "pruned_reason", "git_rev")
        st.dataframe(pd.DataFrame({"field": fields, "value": [_show(row[c]) for c in fields]}),
                     hide_index=True)
    with right:
        if row["curve"]:
            st.markdown("**Learning curve**")
            st.plotly_chart(figures.curve_figure(row["curve"], row["val_loss_curve"]), key="curve_chart")
        st.markdown("**Spec**")
        st.json(row["spec"], expanded=False)
    layer_table(row["spec"])
    try:
        config = exports.trial_config(row, url)
    except UserError as exc:  # a stored spec that does not parse: no config to download
        st.warning(f"No config download for this trial: {exc}")
        return
    d1, d2 = st.columns(2)
    d1.download_button("Download config (YAML)", exports.to_yaml(config),
                       file_name=exports.config_filename(row["study"], row["number"]),
                       mime="application/x-yaml", key="dl_yaml", on_click="ignore")
    d2.download_button("Download config (JSON)", exports.to_json(config),
                       file_name=exports.config_filename(row["study"], row["number"], "json"),
                       mime="application/json", key="dl_json", on_click="ignore")


def _axis_value(frame, i, col) -> str:
    """'acc 61.20%', '12.3k params' or 'loss 0.31': a trial's value on a chart axis."""
    value = frame.at[i, col]
    if col in figures.ACC_AXES:
        return f"acc {_fmt(100 * value, '{:.2f}%')}"
    if col in figures.SIZE_AXES:
        return f"{figures.fmt_count(value)} {figures.SIZE_AXES[col].split(' (')[0]}"
    return f"{figures.axis_title(col, {})} {_fmt(value, '{:.4g}')}"


def _fmt(value, spec: str) -> str:
    return spec.format(value) if pd.notna(value) else "n/a"


def _show(value) -> str:
    """A table cell: whole numbers without '.0', missing values as '—'."""
    if value is None or value == "" or (isinstance(value, float) and np.isnan(value)):
        return "—"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def layer_table(spec: dict) -> None:
    """The analytic per-layer cost table of a stored spec."""
    st.markdown("**Per-layer cost** (analytic; MACs = multiply-adds)")
    if not spec:
        st.info("This trial stored no spec.")
        return
    try:
        from explorer.design.cost import estimate_cost
        from explorer.design.spec import SqueezeSpec

        cost = estimate_cost(SqueezeSpec.from_dict(spec))
    except Exception as exc:  # an old or foreign spec must not break the page
        st.warning(f"Cannot compute the per-layer cost of this spec: {exc}")
        return
    table = pd.DataFrame(cost.rows())
    table["out_shape"] = table["out_shape"].map(lambda s: "x".join(map(str, s)))
    st.dataframe(table, hide_index=True)
    st.caption(f"Total: {cost.params:,} parameters, {cost.macs:,} MACs, {cost.activations:,} activations, "
               f"{cost.size_mb:.3f} MB ({cost.size_mib:.3f} MiB) fp32.")


def design_space_tab(frame, knobs, view, url, chosen, fps) -> None:
    """Accuracy and size against each knob, error EDFs per choice, parameter importances."""
    done = frame[frame[view["acc"]].notna()]
    if not knobs:
        st.info("No knob takes more than one value in these trials.")
        return
    preferred = [k for k in ("knob_sr", "knob_pct_3x3", "knob_pools", "knob_bypass") if k in knobs]
    knob = st.selectbox("Knob", knobs, index=knobs.index(preferred[0]) if preferred else 0,
                        key="ds_knob", format_func=lambda c: c.removeprefix("knob_"))
    c1, c2 = st.columns(2)
    c1.plotly_chart(figures.scatter_by_knob_figure(done, knob, view["acc"],
                                                   figures.axis_title(view["acc"], figures.ACC_AXES)), key="ds_acc")
    c2.plotly_chart(figures.scatter_by_knob_figure(done, knob, view["size"],
                                                   figures.axis_title(view["size"], figures.SIZE_AXES),
                                                   log_y=view["size"] in figures.SIZE_AXES), key="ds_size")
    if view["acc"] not in figures.ACC_AXES:
        st.caption("Error EDFs and importances need an accuracy (explorer's `val_acc` attribute).")
        return
    st.dataframe(figures.knob_effect_data(done, knob, view["acc"], view["size"]), hide_index=True)
    normalise = st.checkbox("Size-normalised EDF", value=False, key="ds_normalise",
                            help="Reweight each choice's models to a common, uniform distribution "
                                 "over log-size bins shared by all choices (see docs/dashboard.md).")
    curves = figures.edf_data(done, knob, view["acc"], view["size"], normalise)
    st.plotly_chart(figures.edf_figure(curves, knob, normalise), key="ds_edf")
    st.markdown("**Parameter importances** (Optuna, target: " + view["acc"] + ")")
    study = st.selectbox("Study", chosen, key="imp_study") if len(chosen) > 1 else chosen[0]
    if st.button("Compute importances", key="imp_go"):
        st.session_state["imp_for"] = study
    if st.session_state.get("imp_for") == study:
        importance_block(frame, url, tuple(chosen), fps, study, view["acc"])


def importance_block(frame, url, studies, fps, study, acc_col) -> None:
    """Importances, or a message saying why there are none."""
    rows = frame[(frame["study"] == study) & frame[acc_col].notna()]
    if len(rows) < 2:
        st.info("Importances need at least two completed trials.")
        return
    try:
        imp = get_importances(url, studies, fps, study, acc_col)
    except Exception as exc:  # e.g. params that never vary, or mixed distributions
        st.info(f"Optuna could not compute importances here: {exc}")
        return
    st.dataframe(pd.DataFrame({"knob": list(imp), "importance": list(imp.values())}), hide_index=True)


def export_tab(frame, roles, knobs, view, url) -> None:
    """The feasible front under the current budgets as a table (CSV), and config exports."""
    if not frame["spec"].map(bool).any():
        st.info("Exports of configs need explorer's attributes (a stored spec per trial); this study has none.")
        return
    front = frame[roles == "front"].sort_values(["study", view["size"]])
    st.markdown(f"**Feasible front** under the current budgets and filters: {len(front)} trial(s)")
    table = exports.trials_table(front, knobs)
    st.dataframe(table, hide_index=True)
    st.download_button("Download front (CSV)", exports.table_csv(table), file_name="pareto_front.csv",
                       mime="text/csv", key="dl_front_csv", on_click="ignore")
    int8_view.show(get_storage(url), list(dict.fromkeys(frame["study"])))  # where int8 results are stored
    picked = selected_frame(frame)
    which = "selected" if len(picked) else "front"
    rows = picked if len(picked) else front
    st.markdown(f"**Config files** for the {len(rows)} {which} trial(s) "
                "(YAML specs with provenance; `explorer.design.spec.load_spec` reads each)")
    if len(rows):
        skipped: list[str] = []
        data = exports.configs_zip(rows, url, skipped)
        if skipped:
            st.warning(f"Left out of the zip: {len(skipped)} trial(s) whose stored spec is invalid: "
                       + "; ".join(skipped))
        if len(skipped) < len(rows):
            st.download_button(f"Download {which} configs (zip)", data,
                               file_name=f"{which}_configs.zip", mime="application/zip", key="dl_zip",
                               on_click="ignore")


main()
