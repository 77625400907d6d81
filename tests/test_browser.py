"""One real browser: Chromium (via Playwright) opens the served dashboard on small studies.

Checks that the Pareto chart rendered every trial and the right front, that a click selects a
trial, that widget changes (the log axis, the size axis) redraw the chart in the browser, and
that a study larger than the chart's point budget draws its other trials as density layers;
saves the screenshot used in the docs, docs/img/dashboard.png, when that file is missing or
EXPLORER_UPDATE_SCREENSHOT=1 (so ordinary runs leave the checkout clean). Timeouts are
generous (a busy CI machine): these tests check correctness; bench/dashboard_load.py --browser
measures speed. Needs Debian's /usr/bin/chromium and the `playwright` Python package (never
`playwright install`: no browser download here).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import _studyfactory as factory  # noqa: E402

CHROMIUM = os.environ.get("EXPLORER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = ROOT / "docs" / "img" / "dashboard.png"

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                                     "(pip install playwright; no browser download needed)")
if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


# Pixel position (page coordinates) and trial number of the front's smallest point. The Pareto chart is
# found by its element's key (another tab's chart can linger in the page while the tabs switch).
CLICK_TARGET = """() => {
  const gd = document.querySelector('.st-key-pareto_chart .js-plotly-plot');
  const t = gd._fullData.find(d => d.name === 'Pareto front');
  let i = 0;
  for (let k = 1; k < t.x.length; k++) if (t.x[k] < t.x[i]) i = k;
  const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const row = t.customdata[i];  // [row id, trial number, accuracy, ...]
  return [box.left + xa.c2p(t.x[i]), box.top + ya.c2p(t.y[i]), row[1]];
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def brute_front_count(points) -> int:
    """Non-dominated (size, acc) pairs by the O(n^2) definition."""
    return sum(not any(s2 <= s and a2 >= a and (s2 < s or a2 > a) for s2, a2 in points)
               for s, a in points)


TIMEOUT_MS = 120_000  # a first chart or a redraw on a loaded machine; correctness, not speed
# Trials on the chart: points of marker traces plus the trials density layers count (z per cell).
DRAWN = """() => { const gd = document.querySelector('.st-key-pareto_chart .js-plotly-plot');
  if (!gd || !gd._fullData) return 0; let n = 0; for (const t of gd._fullData) {
    if (t.type === 'heatmap' && t.meta === 'density') { for (const r of t.z) for (const v of r) if (v > 0) n += v; }
    else if ((t.mode || '').includes('markers') && t.x) n += t.x.length; }
  return n; }"""
AXIS = ("() => { const gd = document.querySelector('.st-key-pareto_chart .js-plotly-plot');"
        " return gd && gd._fullLayout ? [gd._fullLayout.xaxis.type, gd._fullLayout.xaxis.title.text] : null; }")
X_VALUES = """() => { const gd = document.querySelector('.st-key-pareto_chart .js-plotly-plot'); const xs = [];
  for (const t of gd._fullData) if ((t.mode || '').includes('markers')) xs.push(...Array.from(t.x));
  return xs.sort((a, b) => a - b); }"""


@pytest.fixture
def server(tmp_path):
    trials = factory.random_trials(300, seed=7, infeasible_above=1.2e6)
    yield from serve(tmp_path, trials)


@pytest.fixture
def big_server(tmp_path):
    """A study larger than the chart's point budget (dashboards.figures.DETAIL_MAX)."""
    yield from serve(tmp_path, factory.random_trials(900, seed=3))


def serve(tmp_path, trials):
    """Serve the page on one study of `trials`; yields (URL, trials, tmp_path)."""
    storage = factory.make_storage(tmp_path / "studies.journal", {"cifar-sweep": trials})
    port = free_port()
    # a relative storage path, so the screenshot shows "studies.journal", not a temp dir
    env = {**os.environ, "EXPLORER_STORAGE": storage.name, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboards" / "app.py"),
           "--server.address", "127.0.0.1", "--server.port", str(port),
           "--browser.gatherUsageStats", "false", "--server.headless", "true",
           "--client.toolbarMode", "viewer",
           "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
                pytest.fail(f"streamlit did not come up on {url}: {out[-2000:]}")
            time.sleep(0.3)
        yield url, trials, tmp_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_pareto_chart_renders_in_chromium(server):
    url, trials, tmp_path = server
    shot = tmp_path / "dashboard.png"
    feasible = [(t.user_attrs["params"], t.user_attrs["val_acc"]) for t in trials
                if not t.user_attrs["infeasible"]]
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url, wait_until="domcontentloaded", timeout=TIMEOUT_MS)
            page.wait_for_function(f"() => ({DRAWN})() >= {len(trials)}", timeout=TIMEOUT_MS)
            # gd.data keeps numpy arrays as {dtype, bdata}; _fullData holds the decoded ones
            traces = page.evaluate(
                "() => document.querySelector('.st-key-pareto_chart .js-plotly-plot')._fullData.map("
                "  t => ({name: t.name, mode: t.mode, type: t.type, n: t.x.length}))")
            page.wait_for_timeout(1500)  # let WebGL paint before the screenshot
            legend = page.evaluate("() => document.querySelector('.js-plotly-plot .legend')"
                                   ".getBoundingClientRect().bottom")
            page.screenshot(path=str(shot), full_page=False)
            # click the smallest front point: the selection must reach the page as a trial
            x, y, number = page.evaluate(CLICK_TARGET)
            page.mouse.click(x, y)
            page.get_by_text("1 trial(s) selected").wait_for(timeout=TIMEOUT_MS)
            page.get_by_role("tab", name="Trial detail").click()
            heading = page.get_by_text(f"cifar-sweep · trial #{number} ")
            heading.wait_for(timeout=TIMEOUT_MS)
            page.get_by_role("tab", name="Pareto front").click()
            page.wait_for_function(f"() => ({DRAWN})() >= {len(trials)}", timeout=TIMEOUT_MS)
            changed = widget_changes(page)
        finally:
            browser.close()
    points = {t["name"]: t["n"] for t in traces if t["mode"] == "markers"}
    assert sum(points.values()) == len(trials) == 300
    assert points["over budget (study)"] == len(trials) - len(feasible) > 0
    assert points["Pareto front"] == brute_front_count(feasible)
    assert {t["type"] for t in traces} == {"scatter"}  # SVG: no WebGL context per redraw
    macs = sorted(t.user_attrs["macs"] for t in trials)
    assert changed == {"log": ["log", "parameters"], "linear": ["linear", "parameters"],
                       "macs": ["linear", "MACs (multiply-adds per image)"], "x": macs, "same_page": True}
    assert shot.stat().st_size > 10_000
    assert 0 < legend < 900  # the legend shows without scrolling at 1400x900
    if os.environ.get("EXPLORER_UPDATE_SCREENSHOT") == "1" or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def widget_changes(page) -> dict:
    """Uncheck "Log size axis", then pick MACs as the size axis; the chart's axis after each, and its x values."""
    seen = {"log": page.evaluate(AXIS)}
    page.evaluate("() => { document.querySelector('h1').__mark = 1; }")
    page.get_by_text("Log size axis").click()
    page.wait_for_function(f"() => (({AXIS})() || [])[0] === 'linear'", timeout=TIMEOUT_MS)
    seen["linear"] = page.evaluate(AXIS)
    page.get_by_role("combobox", name="Size axis").click()
    page.get_by_role("option", name="MACs (multiply-adds per image)").click()
    page.wait_for_function(f"() => ((({AXIS})() || [])[1] || '').startsWith('MACs')", timeout=TIMEOUT_MS)
    seen["macs"] = page.evaluate(AXIS)
    seen["x"] = page.evaluate(X_VALUES)
    # the page's title is the same element: a widget change must not re-create the page around the chart
    seen["same_page"] = page.evaluate("() => document.querySelector('h1').__mark === 1")
    return seen


def test_a_large_study_draws_points_near_the_front_and_density_for_the_rest(big_server):
    from dashboards.figures import DETAIL_MAX

    url, trials, _ = big_server
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url, wait_until="domcontentloaded", timeout=TIMEOUT_MS)
            page.wait_for_function(f"() => ({DRAWN})() >= {len(trials)}", timeout=TIMEOUT_MS)
            kinds = page.evaluate("() => document.querySelector('.st-key-pareto_chart .js-plotly-plot')._fullData.map("
                                  "  t => [t.type, t.meta || '', t.x.length])")
            grid = page.evaluate("() => document.querySelector('.st-key-pareto_chart .js-plotly-plot')._fullData"
                                 ".find(t => t.type === 'heatmap').x.slice(0, 2)")
            page.get_by_text("Log size axis").click()  # the density grid follows the axis: linear cells
            page.wait_for_function(f"() => (({AXIS})() || [])[0] === 'linear'", timeout=TIMEOUT_MS)
            page.wait_for_function(f"() => ({DRAWN})() >= {len(trials)}", timeout=TIMEOUT_MS)
            linear = page.evaluate("() => document.querySelector('.st-key-pareto_chart .js-plotly-plot')._fullData"
                                   ".find(t => t.type === 'heatmap').x.slice(0, 3)")
        finally:
            browser.close()
    markers = sum(n for kind, meta, n in kinds if kind == "scatter" and meta != "")  # the front line has no meta
    assert markers == DETAIL_MAX < len(trials)
    assert any(kind == "heatmap" and meta == "density" for kind, meta, _ in kinds)
    assert grid[1] / grid[0] > 1.01  # log cells: a constant ratio
    assert linear[2] - linear[1] == pytest.approx(linear[1] - linear[0], rel=1e-6)  # linear cells: a constant step
