"""Writing the table: the stages' rows, the bench networks' zero-cost scores, the sidecar."""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import asdict
from typing import Any

from explorer.study.config import StudyConfig
from explorer.tabular.build import Plan, collect, stage_names
from explorer.tabular.tablefile import frame, write_table


def write(config: StudyConfig, plan: Plan, *, url: str, out: str, data_path: str | None = None,
          proxies: bool = True, progress: bool = True) -> dict[str, Any]:
    """Collect the stored stages, score the bench networks (unless `proxies` is False), write `out`."""
    rows, stages = collect(url, stage_names(config, plan))
    meta: dict[str, Any] = {"study": config.name, "space": config.to_dict()["space"],
                            "budgets": dict(config.budgets), "plan": asdict(plan), "stages": stages,
                            "machine": {"python": platform.python_version(), "platform": platform.platform(),
                                        "processor": platform.machine()}}
    if proxies:
        from explorer.tabular.proxies import score_rows

        start = time.perf_counter()
        meta["proxies"] = score_rows(config, rows, data_path=data_path, progress=progress, out=sys.stderr)
        meta["proxies"]["seconds"] = round(time.perf_counter() - start, 1)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["stage"]] = counts.get(r["stage"], 0) + 1
    meta["counts"] = counts
    return write_table(frame(rows), out, meta)
