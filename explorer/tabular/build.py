"""Training the table: three stages, each an ordinary explorer study in one storage.

- `bench`: the study file as given (its data and trainer settings are the *bench recipe*)
  with a grid sampler over its whole space: every distinct network once (points that build
  the same network are duplicates and reuse its result, as in `explorer run`).
- `long`: the same networks' recipe with `long_factor` times the epochs (and the time guard),
  on a sample of `long_sample` networks chosen from the bench results: the bench front first,
  then the points farthest from those already chosen in (log params, accuracy), so the sample
  covers sizes and accuracies (explorer.results.fidelity.choose_sample).
- `seed`: the bench recipe with the next trainer seed (other initial weights, batch order and
  augmentation) on the first `seed_sample` networks of that sample: the table's own seed noise.

Each stage is resumable like any study (kill it, rerun: finished trials are kept) and runs
with `--jobs`; the sample is a pure function of the bench results, which are deterministic,
so a rerun enqueues the same networks. Trials run on the study's `trainer.threads` (1).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any

from explorer import store
from explorer.core.errors import UserError
from explorer.results.fidelity import choose_sample
from explorer.results.pareto import pareto_front
from explorer.store import attrs as A
from explorer.study.config import SamplerConfig, StudyConfig

STAGES = ("bench", "long", "seed")


@dataclass(frozen=True)
class Plan:
    """How much of the table beyond the bench stage: the long recipe's factor and the sample sizes."""

    long_factor: int = 4
    long_sample: int = 200
    seed_sample: int = 100

    def check(self) -> None:
        """UserError unless the numbers make sense."""
        if self.long_factor < 2:
            raise UserError(f"--long-factor {self.long_factor}: the long recipe needs at least 2x the epochs")
        if self.long_sample < 3 or not 0 <= self.seed_sample <= self.long_sample:
            raise UserError(f"--long-sample {self.long_sample} / --seed-sample {self.seed_sample}: "
                            "need long_sample >= 3 and 0 <= seed_sample <= long_sample")


def stage_config(config: StudyConfig, stage: str, plan: Plan) -> StudyConfig:
    """The study config of one stage (see the module docstring); names `<study>`, `-long`, `-seed<N>`."""
    t = config.trainer
    if stage == "bench":
        return replace(config, sampler=SamplerConfig(name="grid", seed=config.sampler.seed), n_trials=None,
                       timeout_s=None, early_stop=None)
    sampler = SamplerConfig(name="random", seed=config.sampler.seed)  # every trial is enqueued: never used
    if stage == "long":
        guard = t.time_budget_s * plan.long_factor if t.time_budget_s is not None else None
        trainer = replace(t, epochs=t.epochs * plan.long_factor, time_budget_s=guard)
        return replace(config, name=f"{config.name}-long", trainer=trainer, sampler=sampler,
                       n_trials=plan.long_sample, timeout_s=None, early_stop=None)
    if stage == "seed":
        return replace(config, name=f"{config.name}-seed{t.seed + 1}", trainer=replace(t, seed=t.seed + 1),
                       sampler=sampler, n_trials=plan.seed_sample, timeout_s=None, early_stop=None)
    raise ValueError(stage)


def bench_networks(trials) -> list:
    """The bench stage's distinct trained networks: one TrialRecord per spec_id, the first trained."""
    seen: dict[str, Any] = {}
    for t in trials:
        if t.trained and t.attrs.get(A.END) == "completed":
            seen.setdefault(t.attrs[A.SPEC_ID], t)
    return list(seen.values())


def sample(networks: list, k: int) -> list:
    """`k` of the bench networks: the front first, then spread over (log params, accuracy)."""
    size = [t.num(A.PARAMS) for t in networks]
    acc = [t.num(A.VAL_ACC) for t in networks]
    on_front = list(pareto_front(size, acc))
    order = choose_sample(size, acc, on_front, [False] * len(networks), k)
    return [networks[i] for i in order]


def enqueue(study, chosen: list, lock) -> int:
    """Enqueue the chosen networks' knob values that the study holds no trial of yet; how many."""
    with lock():
        have = {tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False)}
        new = [t for t in chosen if tuple(sorted(t.params.items())) not in have]
        for t in new:
            study.enqueue_trial(dict(t.params), skip_if_exists=True)
    return len(new)


def run_stage(config: StudyConfig, stage: str, plan: Plan, *, url: str, jobs, data_path: str | None,
              device: str | None, chosen: list | None = None, out=None) -> Any:
    """Run one stage to completion (resuming it); returns its RunSummary."""
    from explorer.study.loop import open_study, run_study

    out = out or sys.stdout
    cfg = stage_config(config, stage, plan)
    if chosen is not None:
        study = open_study(cfg, url)
        added = enqueue(study, chosen, lambda: store.study_lock(study, url))
        print(f"{cfg.name}: {len(chosen)} networks, {added} newly queued", file=out)
    return run_study(cfg, storage_url=url, jobs=jobs, data_path=data_path, device=device, out=out)


def read_stage(url: str, name: str):
    """The stage's StudyRecord (explorer.store.read_study)."""
    storage = store.open_storage(url, read_only=True)
    return store.read_study(storage, name)


def build(config: StudyConfig, plan: Plan, *, url: str, jobs=None, data_path: str | None = None,
          device: str | None = None, stages: tuple[str, ...] = STAGES, out=None) -> dict[str, Any]:
    """Run the stages in order (each resumable); stage -> its RunSummary. Stops after an interrupted one."""
    plan.check()
    names = stage_names(config, plan)
    done: dict[str, Any] = {}
    for stage in stages:
        chosen = None
        if stage != "bench":
            networks = bench_networks(read_stage(url, names["bench"]).trials)
            if len(networks) < plan.long_sample:
                raise UserError(f"the bench stage has {len(networks)} trained networks, fewer than the "
                                f"long sample of {plan.long_sample}: finish it first (explorer table STUDY "
                                "--stages bench) or lower --long-sample")
            chosen = sample(networks, plan.long_sample)
            chosen = chosen if stage == "long" else chosen[:plan.seed_sample]
            if not chosen:
                continue
        done[stage] = run_stage(config, stage, plan, url=url, jobs=jobs, data_path=data_path, device=device,
                                chosen=chosen, out=out)
        if done[stage].interrupted or done[stage].gave_up:
            break
    return done


def stage_names(config: StudyConfig, plan: Plan) -> dict[str, str]:
    """stage -> its study's name."""
    return {s: stage_config(config, s, plan).name for s in STAGES}


def collect(url: str, names: dict[str, str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The table's rows from the stored stages, and each stage's recipe and cost for the sidecar."""
    from explorer.tabular.tablefile import row

    rows: list[dict[str, Any]] = []
    stages: dict[str, Any] = {}
    storage = store.open_storage(url, read_only=True)
    present = set(store.study_names(storage))
    for stage, name in names.items():
        if name not in present:
            continue
        rec = store.read_study(storage, name)
        trainer, trials = rec.config["trainer"], rec.trials
        spellings = _spellings(trials) if stage == "bench" else {}
        chosen = bench_networks(trials) if stage == "bench" else [
            t for t in trials if t.trained and t.attrs.get(A.END) == "completed"]
        rows += [row(stage, name, t, trainer["epochs"], trainer["seed"], spellings.get(t.attrs[A.SPEC_ID]))
                 for t in chosen]
        stages[stage] = _stage_meta(rec, chosen)
    return rows, stages


def _spellings(trials) -> dict[str, int]:
    """spec_id -> how many grid points of the stage build that network (a duplicate is one more)."""
    count: dict[str, int] = {}
    for t in trials:
        sid = t.attrs.get(A.SPEC_ID)
        if sid and t.state == "COMPLETE" and not t.attrs.get(A.INFEASIBLE):
            count[sid] = count.get(sid, 0) + 1
    return count


def _stage_meta(rec, chosen: list) -> dict[str, Any]:
    """A stage's recipe, provenance and cost (the sidecar's `stages` entry)."""
    first = chosen[0].attrs if chosen else {}
    seconds = [t.num(A.TRAIN_SECONDS) for t in chosen]
    wall = [(t.complete - t.start).total_seconds() for t in chosen if t.complete and t.start]
    return {"study": rec.name, "networks": len(chosen), "data": rec.config["data"] | {"source": None},
            "trainer": rec.config["trainer"], "versions": first.get(A.VERSIONS), "git_rev": first.get(A.GIT_REV),
            "device": first.get(A.DEVICE), "threads": first.get(A.THREADS),
            "train_seconds": {"total": round(sum(seconds), 1), "median": round(_median(seconds), 2)},
            "trial_seconds": {"total": round(sum(wall), 1), "median": round(_median(wall), 2)}}


def _median(v: list[float]) -> float:
    import statistics

    return statistics.median(v) if v else float("nan")
