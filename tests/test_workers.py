"""Many workers on one study: exactly N trials, a killed worker's trial retried, bad URLs.

The PostgreSQL tests need a server: set EXPLORER_TEST_PG_URL (CI runs .ci/postgres.sh,
which prints it); without it they are skipped with that reason. Workers are real
`explorer worker` subprocesses training on a tiny CIFAR-10 subset (4 images per class,
8x8 px, 1 epoch: about a second per trial), each test on its own uniquely named study,
deleted afterwards. Heartbeats are shortened (interval 1 s, grace 8 s) so a dead worker
is noticed in seconds. (A 3 s grace flaked once in a full CI-like run: on 2 busy cores a
live worker's heartbeat came late, it was declared dead, and its trial was retried.)
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from explorer.training.datasource import default_archive

REPO = Path(__file__).resolve().parents[1]
CIFAR_ARCHIVE = default_archive()
PG_URL = os.environ.get("EXPLORER_TEST_PG_URL")
needs_pg = pytest.mark.skipif(not PG_URL, reason="EXPLORER_TEST_PG_URL is not set: no PostgreSQL "
                                                 "server (CI starts one with .ci/postgres.sh)")
FAST = ["--heartbeat-interval", "1", "--grace-period", "8", "--poll", "0.3"]
WORKER_TIMEOUT_S = 120
TRIAL_LINE = re.compile(r"^#(\d+)\s+(\w+)", re.M)
# Run in the victim process only: it claims another host name (so the survivors cannot
# see its pid and must rely on Optuna's heartbeat) and sleeps inside every trial.
VICTIM = ("import socket, sys, time; socket.gethostname = lambda: 'elsewhere'; "
          "import explorer.training.train as t; real = t.train; "
          "t.train = lambda *a, **k: (time.sleep(60), real(*a, **k))[1]; "
          "from explorer.commands import main; sys.exit(main(sys.argv[1:]))")


def study_dict(name: str, n_trials: int) -> dict:
    """A study of about one second per trial on 2 CPU cores; 54 points, no budgets."""
    return {
        "name": name,
        "data": {"source": str(CIFAR_ARCHIVE), "per_class": 4, "val_per_class": 2, "resolution": 8},
        "trainer": {"epochs": 1, "batch_size": 16, "seed": 0},
        "space": {"stem": "cifar", "stem_width": {"choices": [8, 16]},
                  "base_e": {"choices": [8, 16, 24]}, "incr_e": 8, "freq": 2,
                  "pct_3x3": {"choices": [0.25, 0.5, 0.75]}, "sr": {"choices": [0.25, 0.5, 0.75]},
                  "n_fire": 2, "pools": [0, 1], "bypass": "none", "batchnorm": True, "dropout": 0.0},
        "objectives": ["val_acc", "params"],
        "sampler": {"name": "random", "seed": 0},
        "early_stop": False,
        "check_fvcore": False,
        "n_trials": n_trials,
    }


@pytest.fixture(scope="module")
def warm_cache(cifar_archive):
    """Decode the archive once here, so workers do not all decode it at the same time."""
    from explorer.training.data import load_data

    load_data(str(cifar_archive), per_class=4, val_per_class=2, resolution=8)
    return cifar_archive


@pytest.fixture
def new_study(warm_cache):
    """make(url, n_trials) creates a uniquely named study; every one is deleted afterwards."""
    import optuna

    from explorer.study.config import StudyConfig
    from explorer.study.loop import open_study

    made = []

    def make(url: str, n_trials: int) -> str:
        name = f"test-workers-{uuid.uuid4().hex[:10]}"
        open_study(StudyConfig.from_dict(study_dict(name, n_trials)), url)
        made.append((url, name))
        return name

    yield make
    for url, name in made:
        optuna.delete_study(study_name=name, storage=_open(url))


def _open(url: str):
    from explorer import store
    from explorer.store.pg import driver_url

    return store.open_storage(driver_url(url) if store.storage_kind(url) == "postgresql" else url,
                              heartbeat_interval=None)


def _trials(url: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=_open(url)).get_trials(deepcopy=False)


def start_worker(name: str, url: str, cwd: Path, *, victim: bool = False, code: str = VICTIM) -> subprocess.Popen:
    """`explorer worker NAME --storage URL` (fast heartbeats) as a subprocess (a victim runs `code`)."""
    head = [sys.executable, "-c", code] if victim else [sys.executable, "-m", "explorer"]
    # one thread each: three 2-thread workers on 2 cores made trials 3-4x slower (measured)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(head + ["worker", name, "--storage", url, *FAST], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each worker; kills them all on a timeout."""
    out = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=WORKER_TIMEOUT_S)
            out.append((p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return out


def assert_clean(results: list[tuple[int, str, str]]) -> None:
    """Every worker exited 0, printed nothing on stderr and said it was done."""
    for rc, stdout, stderr in results:
        assert rc == 0, f"worker exited {rc}:\n{stdout}\n{stderr}"
        assert stderr.strip() == "", f"worker wrote to stderr:\n{stderr}"
        assert "done: ran" in stdout, stdout


def reported_numbers(results) -> list[int]:
    """Trial numbers the workers printed as finished, all workers together."""
    return sorted(int(n) for _, stdout, _ in results for n, _ in TRIAL_LINE.findall(stdout))


def check_exactly_n(url: str, name: str, n: int, results) -> None:
    from optuna.trial import TrialState

    everything = _trials(url, name)
    # a duplicate (a network already trained) is recorded but takes no place of n_trials
    trials = [t for t in everything if t.user_attrs.get("duplicate_of") is None]
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == n, states
    assert len(trials) == n, f"expected exactly {n} trials, found {len(trials)}: {states}"
    numbers = reported_numbers(results)
    assert numbers == sorted(set(numbers)), f"a trial was reported by two workers: {numbers}"
    assert numbers == sorted(t.number for t in everything)
    assert sum(1 for _, stdout, _ in results if TRIAL_LINE.search(stdout)) >= 2, "only one worker worked"


@needs_pg
def test_three_workers_on_postgres_finish_exactly_n(new_study, tmp_path):
    n = 7
    name = new_study(PG_URL, n)
    results = finish([start_worker(name, PG_URL, tmp_path) for _ in range(3)])
    assert_clean(results)
    check_exactly_n(PG_URL, name, n, results)


@needs_pg
def test_killed_worker_trial_is_retried(new_study, tmp_path):
    from optuna.trial import TrialState

    n = 5
    name = new_study(PG_URL, n)
    victim = start_worker(name, PG_URL, tmp_path, victim=True)
    try:
        killed = _wait_for_running(PG_URL, name, host="elsewhere", timeout_s=60)
        survivors = [start_worker(name, PG_URL, tmp_path) for _ in range(2)]
        time.sleep(1.5)  # the survivors start and begin working while the victim's trial runs
        kept = {t.number for t in _trials(PG_URL, name) if t.state == TrialState.COMPLETE}
        assert _state(PG_URL, name, killed.number) == TrialState.RUNNING
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        results = finish(survivors)
    finally:
        victim.kill()
    assert_clean(results)
    trials = {t.number: t for t in _trials(PG_URL, name)}
    complete = [t for t in trials.values() if t.state == TrialState.COMPLETE]
    assert trials[killed.number].state == TrialState.FAIL
    retries = [t for t in complete if t.user_attrs.get("retry_of") == killed.number]
    assert len(retries) == 1, ("the killed trial was not retried exactly once; trials (state, retry_of, "
                               "fail_reason, host): " + str({k: (t.state.name, t.user_attrs.get("retry_of"),
                                                                 t.user_attrs.get("fail_reason"),
                                                                 t.system_attrs.get("explorer:host"))
                                                             for k, t in trials.items()}))
    assert retries[0].params == trials[killed.number].params
    assert len(complete) == n and len(trials) == n + 1, {k: t.state.name for k, t in trials.items()}
    assert kept <= {t.number for t in complete}, "a trial completed before the kill was lost"


def _wait_for_running(url: str, name: str, *, host: str, timeout_s: float):
    """The first RUNNING trial claimed by a worker on `host` (waits for it)."""
    from optuna.trial import TrialState

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for t in _trials(url, name):
            if t.state == TrialState.RUNNING and t.system_attrs.get("explorer:host") == host:
                return t
        time.sleep(0.2)
    raise AssertionError(f"no trial of host {host!r} started within {timeout_s}s")


def _state(url: str, name: str, number: int):
    return next(t.state for t in _trials(url, name) if t.number == number)


def test_local_workers_on_journal_while_dashboard_reads(new_study, tmp_path):
    from explorer.store import open_storage, read_trials

    n = 6
    url = str(tmp_path / "runs" / "study.journal")
    name = new_study(url, n)
    readers = [lambda: len(read_trials(open_storage(url), name))]
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # dashboards/ is not an installed package
    try:
        from dashboards import loading
    except ImportError:  # the dashboard is optional here; explorer.store is always read
        loading = None
    if loading is not None:
        readers.append(lambda: len(loading.load_trials(loading.open_storage(url), name)))
    stop, seen, errors = threading.Event(), [], []

    def read_loop() -> None:
        while not stop.is_set():
            for read in readers:
                try:
                    seen.append(read())
                except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
                    errors.append(repr(exc))

    reader = threading.Thread(target=read_loop, daemon=True)
    reader.start()
    try:
        results = finish([start_worker(name, url, tmp_path) for _ in range(3)])
    finally:
        stop.set()
        reader.join(30)
    assert errors == [], errors[:3]
    assert len(seen) >= 5 and max(seen) >= 1, f"the readers saw {seen}"
    assert_clean(results)
    check_exactly_n(url, name, n, results)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SECRET = "s3cret-Pw-4711"
BAD_URLS = {
    "unreachable": f"postgresql://explorer:{SECRET}@127.0.0.1:{_closed_port()}/explorer",
    "malformed port": f"postgresql://explorer:{SECRET}@127.0.0.1:54x2/explorer",
    "unencoded @": f"postgresql://explorer:{SECRET}@oops@127.0.0.1/explorer",
    "no database": f"postgresql://explorer:{SECRET}@127.0.0.1:5432",
}
EXPECTED = {"unreachable": "connection refused", "malformed port": "malformed",
            "unencoded @": "malformed", "no database": "malformed", "wrong password": "password"}


def _wrong_password_url() -> str:
    from sqlalchemy.engine import make_url

    return make_url(PG_URL).set(password=SECRET).render_as_string(hide_password=False)


@pytest.mark.parametrize("case", [*BAD_URLS, pytest.param("wrong password", marks=needs_pg)])
@pytest.mark.parametrize("command", ["worker", "status", "trials"])
def test_bad_postgres_url_is_one_masked_line(case, command, tmp_path):
    url = _wrong_password_url() if case == "wrong password" else BAD_URLS[case]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "explorer", command, "some-study", "--storage", url],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert SECRET not in p.stderr + p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("explorer: error: "), p.stderr
    assert EXPECTED[case] in lines[0].lower(), lines[0]
    assert "***" in lines[0], "the URL should be shown, masked"
    assert list(tmp_path.iterdir()) == [], "nothing may be written"
    assert time.monotonic() - started < 30


def test_runs_and_a_worker_together_finish_exactly_n(new_study, tmp_path):
    # `explorer run` claims trials under the same lock as `explorer worker`: two runs and a
    # worker racing on one journal study stop at exactly n trials (none started beyond it).
    import json

    n = 6
    url = str(tmp_path / "runs" / "study.journal")
    name = new_study(url, n)
    study_file = tmp_path / "study.yaml"
    study_file.write_text(json.dumps({**study_dict(name, n), "storage": url}))  # JSON is YAML
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen([sys.executable, "-m", "explorer", "run", str(study_file), "--no-progress"],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = finish(runs + [start_worker(name, url, tmp_path)])
    for rc, stdout, stderr in results:
        assert rc == 0, f"exited {rc}:\n{stdout}\n{stderr}"
    check_exactly_n(url, name, n, results)
