"""Where the browser's time goes on the dashboard: Chromium's performance trace and V8's CPU profile.

Serves the page on a synthetic study (a journal), opens it in headless Chromium (Playwright,
Debian's /usr/bin/chromium, 1400x900) and profiles two things a user waits for: the first
chart in a second session (the server's caches warm, so the browser's share shows) and
widget changes (clicks on "Log size axis" until the chart has the new axis). For each it
prints
- the wall time split at the first WebSocket message after the action: before it, Streamlit's
  boot (first chart) or the server's rerun and the transfer (widget change); after it, the
  browser's work until the chart holds its points / has the new axis;
- the megabytes the page received over Streamlit's WebSocket;
- the renderer's CPU time by where it went (V8's sampling profile, self time): Plotly.js
  (parse, calc, draw), Streamlit's chart wrapper (the spec's JSON and its theme pass),
  WebGL calls, the rest of Streamlit's front end (React, protobuf), garbage collection, and
  the browser's native work outside JavaScript (style, layout, paint, compositing);
- the trace's largest main-thread events (Commit, Layout, Paint, ...).

Shares of the renderer's own CPU time are meaningful on a busy machine; wall times are not.

    python bench/dashboard_profile.py [--trials 10000] [--toggles 4] [--trace-dir DIR]

Last line: one JSON object (shares in percent, times in seconds, the load average).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dashboard_load as dl  # bench/ is on the path when this file runs

ROOT = dl.ROOT
import _studyfactory as factory  # noqa: E402  (tests/ is on the path: dashboard_load put it there)

# Every WebSocket message's arrival (performance.now(), bytes), before Streamlit handles it.
WS_HOOK = """(() => { window.__ws = []; const Orig = window.WebSocket;
  window.WebSocket = class extends Orig { constructor(...a) { super(...a);
    this.addEventListener('message', e => window.__ws.push([performance.now(),
      e.data.byteLength || e.data.size || e.data.length || 0])); } }; })()"""
AXIS_IS = ("w => { const gd = document.querySelector('.js-plotly-plot');"
           " return gd && gd._fullLayout && gd._fullLayout.xaxis.type === w ? performance.now() : false; }")
WEBGL = {"getContext", "getParameter", "getExtension", "getProgramParameter", "getShaderParameter", "compileShader",
         "linkProgram", "shaderSource", "createShader", "createProgram", "readPixels", "texImage2D", "texSubImage2D",
         "bufferData", "bufferSubData", "drawArrays", "drawElements", "drawArraysInstancedANGLE", "clear",
         "vertexAttribDivisorANGLE", "vertexAttribPointer", "uniform1f", "uniform2f", "uniform4f", "uniformMatrix4fv",
         "bindBuffer", "bindTexture", "bindFramebuffer", "useProgram", "viewport", "scissor", "enable", "disable",
         "getSupportedExtensions", "isContextLost", "getContextAttributes", "createTexture", "createBuffer",
         "texParameteri", "pixelStorei", "blendFunc", "blendFuncSeparate", "colorMask", "depthMask", "finish", "flush"}
TRACE_CATEGORIES = ["devtools.timeline", "disabled-by-default-devtools.timeline", "v8.execute", "blink", "toplevel",
                    "gpu", "cc"]


def wrapper_column(static_js: Path) -> tuple[str, int, int]:
    """(file name, line, column) where Streamlit's chart code starts after the bundled Plotly.js: frames
    of that file on that line past that column are the wrapper (react-plotly, spec JSON, theme pass)."""
    for path in static_js.glob("PlotlyChart.*.js"):
        lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
        for number in range(len(lines) - 1, -1, -1):
            col = lines[number].find("return window.Plotly=")
            if col >= 0:
                return path.name, number, col
    return "", -1, -1


def bucket(frame: dict, wrapper: tuple[str, int, int]) -> str:
    """Which part of the page a profile frame's self time belongs to."""
    name, url = frame["functionName"], frame["url"].rsplit("/", 1)[-1]
    if name in ("(idle)", "(program)", "(garbage collector)"):
        return {"(idle)": "idle", "(program)": "browser native (style, layout, paint, compositing)",
                "(garbage collector)": "garbage collection"}[name]
    if not url:
        return "WebGL calls" if name in WEBGL else "other native calls (DOM, JSON)"
    if url == wrapper[0]:
        past = frame["lineNumber"] > wrapper[1] or (frame["lineNumber"] == wrapper[1]
                                                       and frame["columnNumber"] > wrapper[2])
        return "Streamlit's chart wrapper (spec JSON, theme pass)" if past else "Plotly.js (parse, calc, draw)"
    return "Streamlit's front end (React, protobuf, widgets)"


def profile_shares(profile: dict, wrapper: tuple[str, int, int]) -> dict[str, float]:
    """Self seconds per bucket of a V8 CPU profile."""
    nodes = {n["id"]: n["callFrame"] for n in profile["nodes"]}
    out: collections.Counter = collections.Counter()
    deltas = profile["timeDeltas"][1:] + [0]
    for node, dt in zip(profile["samples"], deltas):
        out[bucket(nodes[node], wrapper)] += dt / 1e6
    return dict(out)


def trace_top(events: list[dict], n: int = 8) -> dict[str, float]:
    """The renderer main thread's largest event kinds (seconds, nested events counted in each)."""
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    main = {k for k, v in names.items() if v == "CrRendererMain"}
    skip = {"RunTask", "ThreadControllerImpl::RunTask", "v8.callFunction", "FunctionCall", "RunMicrotasks",
            "MessagePort::Accept", "SimpleWatcher::OnHandleReady", "Receive mojo message", "AsyncTask Run"}
    total: collections.Counter = collections.Counter()
    for e in events:
        if (e.get("pid"), e.get("tid")) in main and e.get("ph") == "X" and e["name"] not in skip:
            total[e["name"]] += e.get("dur", 0) / 1e6
    return {k: round(v, 3) for k, v in total.most_common(n)}


def summarise(label: str, profile: dict, trace: list[dict], wrapper, extra: dict) -> dict:
    """Print and return one phase's figures."""
    seconds = profile_shares(profile, wrapper)
    busy = sum(v for k, v in seconds.items() if k != "idle") or 1e-9
    shares = {k: round(100 * v / busy, 1) for k, v in sorted(seconds.items(), key=lambda kv: -kv[1]) if k != "idle"}
    print(f"\n{label}: " + ", ".join(f"{k} {v}" for k, v in extra.items()))
    print(f"  renderer CPU {busy:.2f} s (idle {seconds.get('idle', 0):.2f} s); shares of it:")
    for k, v in shares.items():
        print(f"    {v:5.1f} %  {k}")
    top = trace_top(trace)
    print("  main thread's largest trace events (s): " + ", ".join(f"{k} {v}" for k, v in top.items()))
    return {"cpu_s": round(busy, 3), "shares_pct": shares, "trace_top_s": top, **extra}


def received(page, since: float) -> tuple[float | None, float]:
    """(time of the first WebSocket message after `since`, megabytes received since)."""
    msgs = [m for m in page.evaluate("() => window.__ws") if m[0] >= since]
    return (msgs[0][0] if msgs else None), sum(m[1] for m in msgs) / 1e6


def milestones(page) -> dict[str, float]:
    """Seconds from navigation: the largest WebSocket message (the chart's) arrived, Plotly's code was asked
    for (Streamlit loads it when the first chart arrives) and had arrived."""
    msgs = page.evaluate("() => window.__ws")
    plotly = page.evaluate("() => performance.getEntriesByType('resource').filter(r => r.name.includes("
                           "'/PlotlyChart.')).map(r => [r.startTime, r.responseEnd])")
    out = {"largest_message_s": round(max(msgs, key=lambda m: m[1])[0] / 1e3, 3)} if msgs else {}
    if plotly:
        out.update(plotly_code_asked_s=round(plotly[0][0] / 1e3, 3), plotly_code_loaded_s=round(plotly[0][1] / 1e3, 3))
    return out


def run(trials: int, toggles: int, trace_dir: Path | None) -> dict:
    """Serve the page on `trials` synthetic trials and profile the first chart and the widget changes."""
    from playwright.sync_api import sync_playwright

    out: dict = {"trials": trials}
    wrapper = wrapper_column(_static_js())
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        storage = str(factory.make_storage(Path(tmp) / "bench.journal", {dl.BENCH_STUDY: trials}))
        proc, url = dl.serve_ours(storage, tmp)
        browser = p.chromium.launch(executable_path=dl.CHROMIUM, args=dl.CHROMIUM_ARGS)
        try:
            dl._time_to_points(browser, url, trials)  # the server reads the trials once
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.add_init_script(WS_HOOK)
            cdp = page.context.new_cdp_session(page)
            cdp.send("Profiler.enable")
            cdp.send("Profiler.setSamplingInterval", {"interval": 250})
            load0 = os.getloadavg()[0]
            browser.start_tracing(page=page, categories=TRACE_CATEGORIES)
            cdp.send("Profiler.start")
            t = time.perf_counter()
            page.goto(url, wait_until="commit")
            done = page.wait_for_function(f"() => ({dl.POINTS_JS})() >= {trials} ? performance.now() : false",
                                          timeout=300_000, polling=10).json_value()
            wall = time.perf_counter() - t
            profile = cdp.send("Profiler.stop")["profile"]
            trace = browser.stop_tracing()
            first_msg, mb = received(page, 0.0)
            extra = {"wall_s": round(wall, 3), "boot_s": round((first_msg or 0) / 1e3, 3),
                     "after_first_message_s": round((done - (first_msg or 0)) / 1e3, 3), "received_mb": round(mb, 2),
                     **milestones(page), "chart_done_s": round(done / 1e3, 3),
                     "loadavg": round((load0 + os.getloadavg()[0]) / 2, 2)}
            out["first_chart"] = summarise("first chart (second session)", profile, _events(trace), wrapper, extra)
            _save(trace_dir, "first_chart", trace, profile)
            out["widget"] = widget_changes(browser, page, cdp, toggles, wrapper, trace_dir)
            page.close()
        finally:
            browser.close()
            dl._stop(proc)
    out["loadavg_1min"] = round(os.getloadavg()[0], 2)
    return out


def widget_changes(browser, page, cdp, toggles: int, wrapper, trace_dir: Path | None) -> dict:
    """`toggles` clicks on "Log size axis", each until the chart has the new axis type."""
    load0 = os.getloadavg()[0]
    walls, server, after, mbs = [], [], [], []
    browser.start_tracing(page=page, categories=TRACE_CATEGORIES)
    cdp.send("Profiler.start")
    for i in range(toggles):
        want = "linear" if i % 2 == 0 else "log"
        t, clicked = time.perf_counter(), page.evaluate("performance.now()")
        page.get_by_text("Log size axis").click()
        done = page.wait_for_function(AXIS_IS, arg=want, timeout=120_000, polling=10).json_value()
        walls.append(time.perf_counter() - t)
        first_msg, mb = received(page, clicked)
        server.append(((first_msg or done) - clicked) / 1e3)
        after.append((done - (first_msg or done)) / 1e3)
        mbs.append(mb)
        page.wait_for_timeout(300)  # let the last frame settle before the next click
    profile = cdp.send("Profiler.stop")["profile"]
    trace = browser.stop_tracing()
    _save(trace_dir, "widget", trace, profile)
    extra = {"median_wall_s": round(statistics.median(walls), 3),
             "median_click_to_first_message_s": round(statistics.median(server), 3),
             "median_after_first_message_s": round(statistics.median(after), 3),
             "median_received_mb": round(statistics.median(mbs), 2),
             "loadavg": round((load0 + os.getloadavg()[0]) / 2, 2)}
    return summarise(f"widget change ({toggles} clicks on 'Log size axis')", profile, _events(trace), wrapper, extra)


def _static_js() -> Path:
    import streamlit

    return Path(streamlit.__file__).resolve().parent / "static" / "static" / "js"


def _events(trace: bytes) -> list[dict]:
    data = json.loads(trace)
    return data["traceEvents"] if isinstance(data, dict) else data


def _save(trace_dir: Path | None, name: str, trace: bytes, profile: dict) -> None:
    """The raw trace and profile, for Chromium's DevTools (Performance panel: load the .json)."""
    if trace_dir is None:
        return
    trace_dir.mkdir(parents=True, exist_ok=True)
    (trace_dir / f"{name}.trace.json").write_bytes(trace)
    (trace_dir / f"{name}.cpuprofile").write_text(json.dumps(profile))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--toggles", type=int, default=4)
    parser.add_argument("--trace-dir", type=Path, default=None, help="keep the raw traces and CPU profiles here")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    result = run(args.trials, args.toggles, args.trace_dir)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
