"""A PostgreSQL outage: workers and runs retry, say so in one line, resume, lose no result.

The retry policy is tested without a server (a fake connection error). The real outage
test STOPS THE SHARED POSTGRESQL SERVER for OUTAGE_S (20) seconds while a worker and a run
work on one study, and always starts it again (also on failure); it needs root, the
server that .ci/postgres.sh starts (EXPLORER_TEST_PG_URL) and the CIFAR-10 archive, and
skips with the reason otherwise. `python tests/test_outage.py 60` runs the same scenario
with a 60 s outage by hand and prints what happened (`... 30 10`: a 30 s outage, a 10 s
retry limit). EXPLORER_TEST_PG_CLUSTER names the cluster if not `main`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy.exc

sys.path.insert(0, str(Path(__file__).parent))
from test_workers import (  # noqa: E402
    CIFAR_ARCHIVE,
    PG_URL,
    REPO,
    TRIAL_LINE,
    _trials,
    study_dict,
)

from explorer.store.outage import DatabaseUnavailable, Outage  # noqa: E402

OUTAGE_S = 20
# The run beats every 30 s (the default): the worker's grace period must be longer, as it must
# be in any real set-up, or it would take the run's trial for dead even without an outage.
HEARTBEAT = ["--heartbeat-interval", "1", "--grace-period", "40", "--poll", "0.3"]
CLUSTER = os.environ.get("EXPLORER_TEST_PG_CLUSTER", "main")  # the cluster behind EXPLORER_TEST_PG_URL
N_TRIALS = 4
# Each trial sleeps 3 s before training, so the outage finds trials mid-way; the result must
# be held and written once the server is back.
SLOW = ("import sys, time; import explorer.training.train as t; real = t.train; "
        "t.train = lambda *a, **k: (time.sleep(3), real(*a, **k))[1]; "
        "from explorer.commands import main; sys.exit(main(sys.argv[1:]))")


def _lost() -> Exception:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))


def test_retries_say_so_once_and_resume():
    out, calls, slept = io.StringIO(), [], []

    def flaky():
        calls.append(1)
        if len(calls) <= 3:
            raise _lost()
        return "written"

    outage = Outage(600, out=out, sleep=slept.append)
    assert outage.call(flaky) == "written"
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "database unreachable (connection refused), retrying for up to 10 min" in lines[0]
    assert lines[1].startswith("explorer: database back after") and slept == [1, 2, 4]
    assert outage.settling(60) and not outage.settling(0)  # just back: heartbeats not yet trusted


def test_gives_up_after_the_limit_with_one_line():
    slept: list[float] = []
    outage = Outage(0, out=io.StringIO(), sleep=slept.append)
    with pytest.raises(DatabaseUnavailable, match="unreachable for over 0 s .*EXPLORER_DB_RETRY_S"):
        outage.call(lambda: (_ for _ in ()).throw(_lost()))
    with pytest.raises(DatabaseUnavailable):  # later failures do not wait again
        outage.call(lambda: (_ for _ in ()).throw(_lost()))
    assert slept == []
    with pytest.raises(ValueError):  # other errors are not the outage's business
        Outage(600).call(lambda: (_ for _ in ()).throw(ValueError("bad value")))


def test_after_ctrl_c_an_unreachable_database_is_not_waited_for():
    slept: list[float] = []
    outage = Outage(600, out=io.StringIO(), sleep=slept.append)
    outage.impatient = True  # what store.stop_waiting sets on Ctrl-C
    with pytest.raises(DatabaseUnavailable, match="interrupted while the database is unreachable"):
        outage.call(lambda: (_ for _ in ()).throw(_lost()))
    assert slept == []


def test_a_bad_retry_limit_is_one_line(monkeypatch):
    from explorer.core.errors import UserError

    monkeypatch.setenv("EXPLORER_DB_RETRY_S", "ten")
    with pytest.raises(UserError, match="EXPLORER_DB_RETRY_S='ten': give the seconds"):
        Outage()


def test_the_rdb_methods_we_wrap_exist():
    """Pins the Optuna names explorer.store._optuna.retrying_rdb wraps (a rename fails here)."""
    from optuna.storages import RDBStorage

    from explorer.store import _optuna

    missing = [n for n in (*_optuna.RDB_RETRIED, "set_trial_state_values", "record_heartbeat",
                           "_get_stale_trial_ids") if not callable(getattr(RDBStorage, n, None))]
    assert missing == []


# --- the real server -------------------------------------------------------------------------

def _cluster() -> str | None:
    versions = sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: [int(x) for x in v.split(".")]) \
        if os.path.isdir("/usr/lib/postgresql") else []
    return versions[-1] if versions else None


def _why_not() -> str | None:
    if not PG_URL:
        return "EXPLORER_TEST_PG_URL is not set: no PostgreSQL server (CI starts one with .ci/postgres.sh)"
    if os.geteuid() != 0 or not shutil.which("pg_ctlcluster") or _cluster() is None:
        return "stopping the PostgreSQL server needs root and pg_ctlcluster"
    if not CIFAR_ARCHIVE.exists():
        return f"no CIFAR-10 archive at {CIFAR_ARCHIVE}"
    return None


@contextlib.contextmanager
def server_down():
    """Stop the local cluster; always start it again (another user's .ci/postgres.sh may already have)."""
    cluster = [_cluster(), CLUSTER]
    subprocess.run(["pg_ctlcluster", *cluster, "stop"], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["pg_ctlcluster", *cluster, "start"], capture_output=True)
        subprocess.run(["pg_ctlcluster", *cluster, "status"], check=True, capture_output=True)


def outage_scenario(workdir: Path, outage_s: float, n_trials: int = N_TRIALS, retry_s: float = 300) -> dict:
    """A worker and a run on one new study; the server goes away for `outage_s` mid-study."""
    import uuid

    import optuna

    from explorer.study.config import StudyConfig
    from explorer.study.loop import open_study

    name = f"test-outage-{uuid.uuid4().hex[:10]}"
    doc = study_dict(name, n_trials)
    open_study(StudyConfig.from_dict(doc), PG_URL)
    (workdir / "s.yaml").write_text(json.dumps(doc))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "EXPLORER_DB_RETRY_S": str(retry_s)}
    cmds = [["worker", name, "--storage", PG_URL, *HEARTBEAT],
            ["run", str(workdir / "s.yaml"), "--storage", PG_URL, "--no-progress"]]
    procs = [subprocess.Popen([sys.executable, "-c", SLOW, *c], cwd=workdir, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in cmds]
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any(
                t.state.name == "COMPLETE" for t in _trials(PG_URL, name)):
            time.sleep(0.5)
        time.sleep(1.5)  # into the next trials' 3 s sleeps
        with server_down():
            time.sleep(outage_s)
        results = [p.communicate(timeout=outage_s + 300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    trials = _trials(PG_URL, name)
    report = {"codes": [p.returncode for p in procs], "outs": [r[0] for r in results],
              "errs": [r[1] for r in results], "states": [t.state.name for t in trials],
              "retries": [t.user_attrs.get("retry_of") for t in trials]}
    optuna.delete_study(study_name=name, storage=PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    return report


@pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")
def test_a_worker_and_a_run_survive_an_outage(tmp_path):
    """STOPS THE SHARED POSTGRESQL SERVER for 20 s (and starts it again)."""
    r = outage_scenario(tmp_path, OUTAGE_S)
    for code, out, err in zip(r["codes"], r["outs"], r["errs"]):
        assert code == 0, f"exit {code}:\n{out}\n{err}"
        assert "Traceback" not in err and "UnboundLocalError" not in err, err
    errs = "".join(r["errs"])
    assert "database unreachable" in errs and "database back after" in errs, errs
    assert r["states"].count("COMPLETE") == N_TRIALS and "RUNNING" not in r["states"], r["states"]
    reported = sorted(int(n) for out in r["outs"] for n, state in TRIAL_LINE.findall(out) if state == "COMPLETE")
    assert len(reported) == N_TRIALS, r["outs"]  # every finished result was written and reported


if __name__ == "__main__":
    import tempfile

    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else OUTAGE_S
    retry = float(sys.argv[2]) if len(sys.argv) > 2 else 300  # below `seconds`: both give up
    if _why_not():
        sys.exit(_why_not())
    started = time.time()
    with tempfile.TemporaryDirectory() as d:
        result = outage_scenario(Path(d), seconds, retry_s=retry)
    for code, out, err in zip(result["codes"], result["outs"], result["errs"]):
        print(f"--- exit {code}\n{out}{err}")
    print(json.dumps({"outage_s": seconds, "wall_s": round(time.time() - started), "states": result["states"],
                      "retries": result["retries"], "codes": result["codes"]}))
