"""Optuna studies of children (``sbrnn child tune``): warm-started by a parent, pruned on their curves.

Needs the ``tune`` extra (``pip install 'sbrnn[tune]'``, Optuna >= 4); importing this module does
not import Optuna, :func:`require_optuna` does.

A study minimises a child's minimum validation loss over the 19 hyperparameters of the sweep space
(:data:`SPACES`; Optuna parameters named like the record columns: ``d_hx``, ``mu_hx``,
``sigma_hx``, ..., ``lr``). Each trial trains one child with :func:`sbrnn.child.train.train_run` at
the study's budget, task, epochs and seed, reports each epoch's validation loss
(``trial.report(val_loss, epoch)``) and stops where the pruner says. How a run ends decides its
trial:

- ``ok``: COMPLETE, valued at the run's minimum validation loss;
- ``diverged``: COMPLETE, valued at :data:`DIVERGED_VALUE` (a large finite loss: the sampler learns
  to avoid the region, typically too high a learning rate);
- ``pruned``: PRUNED (``optuna.TrialPruned``), its partial curve in the record;
- ``failed`` (an error in the run, e.g. a budget that cannot hold the configuration): FAIL, left
  out of the sampler's model.

Every trial that trains writes one record (:func:`sbrnn.records.write_record`) with ``origin =
"tune"``, ``study``, ``trial`` and ``label`` (``warm start k`` or ``tpe``), whatever its status,
so tuned runs feed a parent like sweep runs. Its ``run_id`` hashes the config's run id with the
study name and trial number (:func:`tuned_run_id`): two trials are two runs, even of one config.

Warm start: the parent's top-K recommendations for the task (dims, length, loss, traits) and budget
are enqueued before the sampler's own trials, labelled ``warm start 1`` .. ``K``, and the parent
is named in the study's user attribute ``warm_start``. A rank already in the study (waiting,
running or finished) is never enqueued again; an LSTM recommendation is skipped unless the study
chooses between architectures (dense and uniform are all densities at 1 or at 0.2), and values
outside the space are clipped into it, each with a note; a rank that clipping makes the same as
an earlier rank is skipped with a note (it would train that configuration twice). A study
warm-started by a parent fitted on other records (another data SHA-256) takes no ranks from this
one, with a note: one study's warm start comes from one parent. (Processes
started at the same instant on a new study may both enqueue it: each copy is then a trial and a
record of its own. Start one process first.)

Architectures: by default every trial is a sparse child. A study of ``archs = ("sbrnn", "lstm")``
also chooses the architecture, the categorical parameter ``arch``: an LSTM trial draws only ``lr``
(its ``h`` follows from the budget), an sbrnn trial the 19 as above (Optuna's define-by-run
conditional space), so a parent that ranks the equal-budget LSTM first can warm-start the study
with it.

Resume and concurrency: the target is ``trials`` trials in the study that trained (COMPLETE,
PRUNED, and FAIL with a record). A trial cut short (Ctrl-C, kill -9) ends FAIL without a record,
is not counted, and a warm start cut short is enqueued again; the same command therefore
finishes exactly ``trials`` recorded trials. Processes on one storage share the study (Optuna
gives each waiting trial to one of them); each trial is run, and recorded, by one process. A
RUNNING trial left by a killed process is failed by:

- a database URL (``sqlite:///study.db``, ``postgresql://...``): Optuna's heartbeat, every
  :data:`HEARTBEAT_S` s, and ``fail_stale_trials`` once a trial has none for :data:`GRACE_S` s;
- a journal file (any other path; the default ``<records>/optuna.journal``): worker leases, one
  file per process in ``<journal>.workers/`` held under an exclusive ``flock`` for the process's
  life; a trial whose worker's file is not locked has lost its process (the kernel drops the lock
  of a killed one, at once). A trial is claimed in the moment after Optuna starts it; one started
  more than :data:`GRACE_S` s ago and still unclaimed lost its process in that moment.

While every remaining slot is taken by running trials, a process waits for them (polling every
:data:`POLL_S` s) and reruns those that turn stale.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sbrnn.child.config import RunConfig
from sbrnn.child.weight_space import Grid, format_grid, grid_blocks
from sbrnn.errors import SbrnnError
from sbrnn.vocabulary import BLOCKS, check_choice

if TYPE_CHECKING:  # imported where used: the parent is optional at run time
    from sbrnn.parent.recommend import Recommendation

DIVERGED_VALUE = 1e6
"""The value of a diverged run's trial: above any loss a converging child reaches."""
HEARTBEAT_S = 10
"""Seconds between heartbeats of a running trial in a database storage."""
GRACE_S = 30
"""Seconds without a heartbeat after which a database storage's running trial is stale; and after
which a journal's running trial that no worker claimed is."""
POLL_S = 5.0
"""Seconds between looks at the study while waiting for other processes' trials."""
DEFAULT_WARM_START = 10
"""Parent recommendations enqueued when ``warm_start`` is not given: the top 10, which beat the top
5 and five random draws on the fifth held-out batch (``benchmarks/tune_compare.py``'s
``tpe+parent10`` against ``tpe+parent``; docs/parent.md, "Ten recommendations instead of five")."""
STUDY_ARCHS = ("sbrnn", "lstm")
"""Architectures a study may choose between (``TuneSettings.archs``; the default is sbrnn only): of
:data:`sbrnn.vocabulary.ARCHS`, those a trial cannot express as sbrnn densities (dense and uniform are
block grids of the space)."""
DEFAULT_ARCHS = ("sbrnn",)
"""A study's architectures unless it says otherwise: its identity then carries no ``archs``, as
studies made before architectures could be chosen did not."""
DEFAULT_JOURNAL = "optuna.journal"
"""The study's journal file inside the records directory when no storage is given."""
PRUNERS = ("median", "asha", "none")
MEDIAN_STARTUP = 5
"""Trials the median pruner lets finish before it prunes any."""

STUDY_ATTR, WARM_ATTR = "sbrnn", "warm_start"
LABEL, STATUS, RUN_ID, WORKER = "sbrnn_label", "sbrnn_status", "sbrnn_run_id", "sbrnn_worker"
"""Trial user attributes: label, the run's status and run id (set once it is recorded), worker lease."""


@dataclass(frozen=True)
class Range:
    """One hyperparameter's range: ``[low, high]``, on a grid of ``step`` or sampled in log space."""

    low: float
    high: float
    step: float | None = None
    log: bool = False

    def clip(self, value: float) -> float:
        """``value`` moved into the range (and onto its grid)."""
        value = min(max(float(value), self.low), self.high)
        if self.step is not None:
            value = round(self.low + round((value - self.low) / self.step) * self.step, 10)
        return value


def _space(density: Range, lr: Range) -> dict[str, Range]:
    means, stds = Range(-0.0075, 0.0075), Range(0.005, 0.095)
    return {
        **{f"d_{b}": density for b in BLOCKS},
        **{f"mu_{b}": means for b in BLOCKS},
        **{f"sigma_{b}": stds for b in BLOCKS},
        "lr": lr,
    }


SPACES = {
    "paper": _space(Range(0.02, 1.0, 0.01), Range(1e-4, 2.2e-3, log=True)),
    "wide": _space(Range(0.01, 1.0, 0.01), Range(1e-4, 1e-2, log=True)),
}
"""The search spaces. ``paper``: the sweep space's ranges (:mod:`sbrnn.child.sampling`) — densities in
[0.02, 1] on a 0.01 grid, init means uniform in [-0.0075, 0.0075], stds in [0.005, 0.095] and
learning rate log-uniform in [1e-4, 2.2e-3] (3 sigma of the paper's distributions, the learning
rate's floor at 1e-4: 98.5% of the sweep's draws lie inside; the ``uniform`` sweep space has the
same box), so a parent fitted on sweep records can recommend anywhere in it. ``wide``: densities
in [0.01, 1] and learning rate log-uniform in [1e-4, 1e-2], means and stds as ``paper``."""


def space_ranges(space: str) -> str:
    """The ranges of ``space`` in one line (``d 0.02..1 step 0.01; mu ...; lr 0.0001..0.0022 log``),
    one entry per kind of hyperparameter: part of a study's identity, so a study made with other
    ranges under the same space name is refused, not continued."""
    kinds: dict[str, str] = {}
    for name, r in SPACES[space].items():
        text = f"{r.low:g}..{r.high:g}" + (f" step {r.step:g}" if r.step else "") + (" log" if r.log else "")
        kinds.setdefault(name.split("_")[0], text)
    return "; ".join(f"{kind} {text}" for kind, text in kinds.items())


def space_tag(space: str) -> str:
    """``space`` with 8 hex digits of its ranges' SHA-256 (``paper-1a2b3c4d``): for study names that
    must change when the ranges do (a study is refused under other ranges)."""
    return f"{space}-{hashlib.sha256(space_ranges(space).encode()).hexdigest()[:8]}"


def require_optuna():
    """The ``optuna`` module; a one-line :class:`SbrnnError` when it is missing or older than 4."""
    try:
        import optuna
    except ImportError:
        raise SbrnnError("tuning needs Optuna, which is not installed: pip install 'sbrnn[tune]'") from None
    if int(optuna.__version__.split(".")[0]) < 4:
        raise SbrnnError(f"Optuna {optuna.__version__} is too old; allowed: >= 4 (pip install 'sbrnn[tune]')")
    return optuna


@dataclass(frozen=True)
class TuneSettings:
    """One study: what to tune and how.

    Attributes:
        task, task_options: the registered task and its builder options.
        budget: trainable weights (biases excluded) of every child; sets ``h``.
        trials: trials that train, in the study in total (see the module doc).
        records: directory of the run records.
        epochs, batch_size, seed: every child's epochs, batch size (sequences) and seed.
        patience: every child's early stopping (epochs without a new best), None = none.
        sampler_seed: seeds the sampler (None = ``seed``): studies of one task's data (``seed``)
            that differ only in their sampler's draws.
        storage: a database URL or a journal file path; None = ``<records>/optuna.journal``.
        study: the study name; None = ``tune-<task>-<budget>``.
        warm_start: parent recommendations to enqueue (0: none).
        pruner: ``median`` (median of earlier trials at the same epoch, from a quarter of the
            epochs on, after :data:`MEDIAN_STARTUP` trials), ``asha`` (asynchronous successive
            halving, Optuna's defaults) or ``none``.
        space: a key of :data:`SPACES`.
        archs: the architectures the study chooses between (of :data:`STUDY_ARCHS`); sbrnn only by
            default, where no trial has an ``arch`` parameter.
        device, threads: as :func:`sbrnn.child.train.train_run` takes them.
    """

    task: str
    budget: float
    trials: int
    records: Path
    task_options: dict = field(default_factory=dict)
    epochs: int = 25
    batch_size: int = 16
    seed: int = 0
    storage: str | None = None
    study: str | None = None
    warm_start: int = DEFAULT_WARM_START
    pruner: str = "median"
    space: str = "paper"
    device: str | None = None
    threads: int | None = 1
    patience: int | None = None
    sampler_seed: int | None = None
    archs: tuple[str, ...] = DEFAULT_ARCHS

    def __post_init__(self) -> None:
        check_choice("pruner", self.pruner, PRUNERS)
        check_choice("space", self.space, tuple(SPACES))
        for arch in self.archs:
            check_choice("arch", arch, STUDY_ARCHS)
        if not self.archs or len(set(self.archs)) != len(self.archs):
            raise SbrnnError(
                f"archs {','.join(self.archs) or '(none)'!r} is not allowed; allowed: distinct names of "
                + ", ".join(STUDY_ARCHS)
            )
        for name, value, least in (
            ("trials", self.trials, 1),
            ("warm start", self.warm_start, 0),
            ("seed", self.seed, 0),
        ):
            if value < least:
                raise SbrnnError(f"{name} = {value} is out of range; allowed: integers >= {least}")
        if not self.budget > 0:
            raise SbrnnError(f"budget = {self.budget:g} is out of range; allowed: a number > 0")
        for arch in self.archs:  # RunConfig checks the rest
            self.config({"arch": arch, **{name: r.low for name, r in self.ranges(arch).items()}})

    @property
    def storage_spec(self) -> str:
        return self.storage or str(Path(self.records) / DEFAULT_JOURNAL)

    @property
    def sampler_seed_value(self) -> int:
        return self.seed if self.sampler_seed is None else self.sampler_seed

    @property
    def study_name(self) -> str:
        return self.study or f"tune-{self.task}-{self.budget:g}"

    def identity(self) -> dict:
        """What every trial of the study shares: a study made with other values is refused."""
        keys = ("task", "task_options", "budget", "epochs", "batch_size", "seed", "space", "patience")
        made = {k: getattr(self, k) for k in keys} | {"ranges": space_ranges(self.space)}
        if self.archs != DEFAULT_ARCHS:
            made["archs"] = list(self.archs)
        return json.loads(json.dumps(made))

    def ranges(self, arch: str) -> dict[str, Range]:
        """The hyperparameters a trial of ``arch`` draws: the space's 19 for sbrnn, ``lr`` for an LSTM."""
        space = SPACES[self.space]
        return {"lr": space["lr"]} if arch == "lstm" else space

    def config(self, params: dict) -> RunConfig:
        """The run of a trial with hyperparameters ``params`` (named as the record columns; ``arch``
        where the study chooses it, else its one architecture)."""
        arch = params.get("arch", self.archs[0])
        sparse = arch == "sbrnn"
        return RunConfig(
            task=self.task,
            task_options=self.task_options,
            arch=arch,
            budget=self.budget,
            lr=params["lr"],
            epochs=self.epochs,
            batch_size=self.batch_size,
            seed=self.seed,
            patience=self.patience,
            densities=_grid(params, "d") if sparse else None,
            means=_grid(params, "mu") if sparse else None,
            stds=_grid(params, "sigma") if sparse else None,
        )


def _grid(params: dict, prefix: str) -> Grid:
    """The 2x3 grid of parameters ``<prefix>_<block>`` (rows h, y; columns x, h, y)."""
    hx, hh, hy, yx, yh, yy = (params[f"{prefix}_{b}"] for b in BLOCKS)
    return (hx, hh, hy), (yx, yh, yy)


def tuned_run_id(config: RunConfig, study: str, trial: int) -> str:
    """A 16-hex-digit run id of trial ``trial`` of ``study``: the config's run id hashed with both."""
    return hashlib.sha256(f"{config.run_id()}/{study}/{trial}".encode()).hexdigest()[:16]


def recommendation_params(scored, archs: tuple[str, ...] = DEFAULT_ARCHS) -> dict | None:
    """A recommended configuration (:class:`sbrnn.parent.recommend.Scored`) as the parameters of a
    trial of a study of ``archs``; None where its architecture is not one of them (dense and uniform
    are sbrnn block grids). ``arch`` is a parameter only where the study chooses between several."""
    arch = "sbrnn" if scored.densities is not None else "lstm"
    if arch not in archs:
        return None
    chosen = {"arch": arch} if len(archs) > 1 else {}
    if arch == "lstm":
        return {**chosen, "lr": float(scored.lr)}
    params = {}
    for prefix, grid in (("d", scored.densities), ("mu", scored.means), ("sigma", scored.stds)):
        params.update({f"{prefix}_{b}": float(v) for b, v in grid_blocks(grid).items()})
    return {**chosen, **params, "lr": float(scored.lr)}


def open_storage(spec: str, heartbeat: bool = False):
    """The Optuna storage ``spec`` names: a database URL (``sqlite:///study.db``; with ``heartbeat``
    trials beat every :data:`HEARTBEAT_S` s) or a journal file path (created with its folder)."""
    optuna = require_optuna()
    if "://" not in spec:
        path = Path(spec)
        if path.is_dir():
            raise SbrnnError(
                f"storage {spec!r} is a directory; allowed: a database URL or a journal file path"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    beat = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S} if heartbeat else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(spec, **beat)
    except Exception as exc:  # noqa: BLE001 - any unusable URL is one clear error
        raise SbrnnError(
            f"storage {spec!r} cannot be opened ({' '.join(str(exc).split())[:200]}); allowed: a "
            "database URL such as sqlite:///study.db, or a journal file path"
        ) from None


def enqueue_recommendations(storage: str | None, study_name: str | None, recommendation) -> int:
    """Enqueue the configurations of ``recommendation`` (:class:`sbrnn.parent.recommend.Recommendation`)
    into the existing study ``study_name`` of ``storage``, in rank order; returns how many (an
    LSTM is skipped). The trials' parameters are named as the record columns (``d_hx``, ``mu_hx``,
    ``sigma_hx``, ..., ``lr``), each with user attribute ``sbrnn_label`` = ``<parent> rank k``."""
    if storage is None or study_name is None:
        raise SbrnnError(
            f"Optuna storage {storage!r} and study name {study_name!r} go together; allowed: both or neither"
        )
    optuna = require_optuna()
    if "://" not in storage and not Path(storage).is_file():
        raise SbrnnError(f"storage {storage!r} does not exist; allowed: a journal file or a database URL")
    opened = open_storage(storage)
    try:
        study = optuna.load_study(study_name=study_name, storage=opened)
    except KeyError:
        names = ", ".join(optuna.get_all_study_names(opened)) or "none"
        raise SbrnnError(f"study {study_name!r} is not in storage {storage!r}; allowed: {names}") from None
    parent = recommendation.parent["name"]
    count = 0
    for scored in recommendation.top:
        params = recommendation_params(scored)
        if params is not None:
            study.enqueue_trial(params, user_attrs={LABEL: f"{parent} rank {scored.rank}"})
            count += 1
    study.set_user_attr(WARM_ATTR, {**_parent_attr(recommendation), "top": count})
    return count


def _parent_attr(recommendation) -> dict:
    """The study attribute naming the parent of ``recommendation``: its name, model, fit time, data
    SHA-256 and the recommendation's mode."""
    about = dict(recommendation.parent)
    return {"parent": about.pop("name"), **about, "mode": recommendation.mode}


def load_warm_start_parent(directory: str | os.PathLike | None = None) -> tuple[object | None, str | None]:
    """The parent in ``directory`` (None: the one shipped with sbrnn) and None; or, when sbrnn ships
    none, ``(None, note)`` with a one-line note saying so."""
    from sbrnn.parent.store import MANIFEST, load_parent, load_shipped, shipped_directory

    if directory is not None:
        return load_parent(directory)[0], None
    if not (shipped_directory() / MANIFEST).is_file():
        return None, "no warm start: this sbrnn installation ships no parent; fit one and give its directory"
    return load_shipped()[0], None


def _state(trial) -> str:
    return trial.state.name.lower()


def _ran(trial) -> bool:
    """The trial trained and is recorded (or ended COMPLETE/PRUNED by another objective)."""
    return _state(trial) in ("complete", "pruned") or (_state(trial) == "fail" and STATUS in trial.user_attrs)


def _interrupted(trial) -> bool:
    """FAIL without a record: cut short by Ctrl-C, or left RUNNING by a killed process."""
    return _state(trial) == "fail" and STATUS not in trial.user_attrs


class _Heartbeat:
    """Stale trials of a database storage: Optuna's heartbeat (see the module doc)."""

    def claim(self, trial) -> None:
        """Nothing to do: Optuna beats for the trial while ``study.optimize`` runs it."""

    def fail_stale(self, study) -> None:
        optuna = require_optuna()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)

    def close(self) -> None:
        """Nothing to release."""


class _Leases:
    """Stale trials of a journal file: worker lease files under ``flock`` (see the module doc)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory, self.token = directory, uuid.uuid4().hex
        self._file = open(directory / self.token, "w")  # held, locked, for the process's life
        fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def claim(self, trial) -> None:
        trial.set_user_attr(WORKER, self.token)

    def _alive(self, token: str) -> bool:
        path = self.directory / token
        try:
            handle = open(path, "a")
        except FileNotFoundError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            path.unlink(missing_ok=True)
            return False

    def fail_stale(self, study) -> None:
        optuna = require_optuna()
        now = datetime.datetime.now()
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            token = trial.user_attrs.get(WORKER)
            if token:
                stale = token != self.token and not self._alive(token)
            else:  # killed between Optuna starting the trial and the claim
                started = trial.datetime_start
                stale = started is not None and (now - started).total_seconds() > GRACE_S
            if stale:
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)

    def close(self) -> None:
        (self.directory / self.token).unlink(missing_ok=True)
        self._file.close()


@dataclass(frozen=True)
class WarmStart:
    """The warm start of a study: the parent's name (None without one), the ranks asked for, those
    this command enqueued, those already in the study, and notes (ranks skipped or clipped)."""

    parent: str | None
    top: int
    enqueued: int
    already: int
    notes: tuple[str, ...]


class _WarmStarter:
    """Enqueues the ranks of the parent's top-K that the study lacks (see the module doc)."""

    def __init__(self, settings: TuneSettings, task, parent, note: str | None) -> None:
        self.settings, self.task, self.parent = settings, task, parent
        self.notes = [note] if note and settings.warm_start else []
        self.recommendation: Recommendation | None = None
        self.enqueued = 0
        self.already: int | None = None
        self.foreign = False  # the study's warm start came from a parent fitted on other records

    def ensure(self, study, trials) -> None:
        k = self.settings.warm_start
        if not k or self.parent is None:
            return
        skipped = set(study.user_attrs.get(WARM_ATTR, {}).get("skipped", []))
        live = {t.user_attrs.get(LABEL) for t in trials if not _interrupted(t)}
        missing = [r for r in range(1, k + 1) if f"warm start {r}" not in live and r not in skipped]
        if self.already is None:
            self.already = k - len(missing) - len(skipped)
        if not missing or self.foreign:
            return
        if self.recommendation is None:
            from sbrnn.parent.features import TaskContext
            from sbrnn.parent.recommend import recommend

            self.recommendation = recommend(
                self.parent,
                TaskContext.of_task(self.task),
                self.settings.budget,
                top=k,
                seed=self.settings.seed,
                task_name=self.task.name,
            )
        stored = study.user_attrs.get(WARM_ATTR, {}).get("records_sha256")
        ours = self.recommendation.parent.get("records_sha256")
        if stored and ours and stored != ours:
            self.foreign = True
            self.notes.append(
                f"warm start: the study was warm-started by another parent (data {stored[:12]}); "
                f"{self.parent.name} (data {ours[:12]}) enqueues none of its ranks {missing}"
            )
            return
        top, space, archs = self.recommendation.top, SPACES[self.settings.space], self.settings.archs
        where = f"the {self.settings.space} space"
        first_of: dict[tuple, int] = {}  # clipped parameters -> the first rank that has them
        for rank in range(1, k + 1):
            params = recommendation_params(top[rank - 1], archs) if rank <= len(top) else None
            clipped = None
            if params is not None:
                clipped = {name: space[name].clip(v) if name in space else v for name, v in params.items()}
            first = rank if clipped is None else first_of.setdefault(tuple(sorted(clipped.items())), rank)
            if rank not in missing:
                continue
            if params is None or clipped is None:
                why = (
                    f"its {top[rank - 1].arch} is not among the study's architectures ({', '.join(archs)})"
                    if rank <= len(top)
                    else "it gave fewer"
                )
                self.notes.append(f"warm start {rank} skipped: {why}")
                skipped.add(rank)
                continue
            if first != rank:
                self.notes.append(f"warm start {rank} skipped: clipped into {where} it is warm start {first}")
                skipped.add(rank)
                continue
            moved = [f"{name} {params[name]:g} -> {v:g}" for name, v in clipped.items() if v != params[name]]
            if moved:
                self.notes.append(f"warm start {rank} clipped into {where}: {', '.join(moved)}")
            study.enqueue_trial(clipped, user_attrs={LABEL: f"warm start {rank}"})
            self.enqueued += 1
        study.set_user_attr(
            WARM_ATTR, {**_parent_attr(self.recommendation), "top": k, "skipped": sorted(skipped)}
        )

    def info(self) -> WarmStart:
        name = None if self.parent is None or not self.settings.warm_start else self.parent.name
        return WarmStart(name, self.settings.warm_start, self.enqueued, self.already or 0, tuple(self.notes))


class RunFailed(Exception):
    """A trial's run ended ``failed``: the trial ends FAIL (its record kept)."""


def _sampler(seed: int, number: int):
    """TPE seeded by the study seed and the trial number: a study replays in one process, and
    concurrent processes (which never share a trial number) never draw the same random trials."""
    optuna = require_optuna()
    derived = np.random.SeedSequence([seed, number + 1]).generate_state(1)[0]
    return optuna.samplers.TPESampler(seed=int(derived))


def make_pruner(name: str, epochs: int):
    """The Optuna pruner ``name`` (:data:`PRUNERS`) for runs of ``epochs`` epochs."""
    optuna = require_optuna()
    check_choice("pruner", name, PRUNERS)
    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=MEDIAN_STARTUP, n_warmup_steps=max(1, epochs // 4)
        )
    return optuna.pruners.SuccessiveHalvingPruner() if name == "asha" else optuna.pruners.NopPruner()


class _Objective:
    """One trial: one child trained, recorded, and its outcome told to Optuna (see the module doc)."""

    def __init__(self, settings: TuneSettings, task, liveness) -> None:
        self.settings, self.task, self.liveness = settings, task, liveness
        self.number = -1

    def __call__(self, trial) -> float:
        from sbrnn.child.train import train_run
        from sbrnn.records import write_record

        optuna = require_optuna()
        settings = self.settings
        self.number = trial.number
        trial.study.sampler = _sampler(
            settings.sampler_seed_value, trial.number
        )  # read when the trial suggests
        self.liveness.claim(trial)
        label = trial.user_attrs.get(LABEL) or "tpe"
        trial.set_user_attr(LABEL, label)
        archs = settings.archs
        arch = trial.suggest_categorical("arch", archs) if len(archs) > 1 else archs[0]
        params = {  # clip: onto the grid without float noise (0.48, not 0.48000000000000004)
            name: r.clip(trial.suggest_float(name, r.low, r.high, step=r.step, log=r.log))
            for name, r in settings.ranges(arch).items()
        }
        config = settings.config({"arch": arch, **params})

        def report(epoch: int, metrics: dict) -> bool:
            trial.report(metrics["val_loss"], epoch)
            return trial.should_prune()

        record = train_run(
            config, self.task, device=settings.device, threads=settings.threads, progress=report
        )
        record.run_id = tuned_run_id(config, settings.study_name, trial.number)
        record.origin, record.study, record.trial, record.label = (
            "tune",
            settings.study_name,
            trial.number,
            label,
        )
        write_record(record, settings.records)
        trial.set_user_attr(RUN_ID, record.run_id)
        trial.set_user_attr(STATUS, record.status)
        if record.status == "pruned":
            raise optuna.TrialPruned(f"pruned after epoch {len(record.val_loss)}")
        if record.status == "failed":
            raise RunFailed(record.error)
        if record.status == "diverged":
            return DIVERGED_VALUE
        assert record.min_val_loss is not None  # an ok run has recorded at least one epoch
        return record.min_val_loss


@dataclass(frozen=True)
class TrialRow:
    """One trial of the study: number, label, Optuna state, value, the run's status and epochs run
    (reported validation losses), its run id and parameters."""

    number: int
    label: str | None
    state: str
    value: float | None
    status: str | None
    epochs: int
    run_id: str | None
    params: dict

    @classmethod
    def of(cls, trial) -> TrialRow:
        return cls(
            trial.number,
            trial.user_attrs.get(LABEL),
            _state(trial),
            trial.value,
            trial.user_attrs.get(STATUS),
            len(trial.intermediate_values),
            trial.user_attrs.get(RUN_ID),
            {  # 0.69, not 0.6900000000000001; the architecture as its name
                name: v if isinstance(v, str) else float(f"{v:.12g}") for name, v in trial.params.items()
            },
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def arch(self) -> str | None:
        """The trial's architecture: its ``arch`` parameter where the study chooses one, else sbrnn
        where it drew densities and lstm where it drew only ``lr`` (None before it drew any)."""
        if "arch" in self.params:
            return str(self.params["arch"])
        if self.densities is not None:
            return "sbrnn"
        return "lstm" if "lr" in self.params else None

    @property
    def densities(self) -> str | None:
        """The densities as ``"hx,hh,hy/yx,yh,yy"`` (None before the trial drew them)."""
        if any(f"d_{b}" not in self.params for b in BLOCKS):
            return None
        return format_grid(_grid(self.params, "d"))


def _ranked(trials) -> list:
    """COMPLETE trials of ``ok`` runs (value below :data:`DIVERGED_VALUE`), best first."""
    done = [t for t in trials if _state(t) == "complete" and t.value is not None and t.value < DIVERGED_VALUE]
    return sorted(done, key=lambda t: (t.value, t.number))


@dataclass(frozen=True)
class TuneStart:
    """A study as a tune command finds it: trials that trained so far of the target, the warm start."""

    study: str
    storage: str
    finished: int
    target: int
    warm_start: WarmStart


@dataclass(frozen=True)
class TrialOutcome:
    """A trial this process ran, with the study's trials finished (all processes) and best so far."""

    trial: TrialRow
    finished: int
    best: TrialRow | None


@dataclass(frozen=True)
class TuneSummary:
    """What a tune command leaves: the study's trials by Optuna state (``interrupted``: FAIL without a
    run, not counted), the trials that trained (``finished``) of the ``target``, those this command
    ran, the best trial and the ``top`` ones (COMPLETE, ``ok``), the warm start, and ``stopped``
    when Ctrl-C ended it early."""

    study: str
    storage: str
    task: str
    budget: float
    target: int
    finished: int
    ran: int
    states: dict[str, int]
    interrupted: int
    best: TrialRow | None
    top: tuple[TrialRow, ...]
    warm_start: WarmStart
    pruner: str
    space: str
    archs: tuple[str, ...]
    records: str
    stopped: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _outcome(trials, number: int) -> TrialOutcome:
    """Trial ``number`` among the study's ``trials`` (listed by number), with the study's count and best."""
    ranked = _ranked(trials)
    return TrialOutcome(
        TrialRow.of(trials[number]),
        sum(map(_ran, trials)),
        TrialRow.of(ranked[0]) if ranked else None,
    )


def _open_study(settings: TuneSettings, storage, pruner):
    """The study of ``settings``, created or loaded; one made for other settings is refused."""
    optuna = require_optuna()
    name, spec = settings.study_name, settings.storage_spec
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=_sampler(settings.sampler_seed_value, -1),
        pruner=pruner,
        direction="minimize",
        load_if_exists=True,
    )
    made, identity = study.user_attrs.get(STUDY_ATTR), settings.identity()
    if made is None and (study.trials or len(study.directions) != 1 or study.direction.name != "MINIMIZE"):
        raise SbrnnError(
            f"study {name!r} in {spec!r} was not made by sbrnn child tune; give another study name"
        )
    if made is None:
        study.set_user_attr(STUDY_ATTR, identity)
    elif made != identity:
        made, identity = ({"archs": list(DEFAULT_ARCHS), **d} for d in (made, identity))
        key = next(k for k in {**made, **identity} if made.get(k) != identity.get(k))
        raise SbrnnError(
            f"study {name!r} in {spec!r} tunes {key} = {made.get(key)!r}, not {identity.get(key)!r}; "
            "allowed: the study's own settings, or another study name"
        )
    return study


def tune(
    settings: TuneSettings,
    task,
    *,
    parent=None,
    parent_note: str | None = None,
    pruner=None,
    on_start: Callable[[TuneStart], None] | None = None,
    on_trial: Callable[[TrialOutcome], None] | None = None,
    on_wait: Callable[[int], None] | None = None,
) -> TuneSummary:
    """Run the study of ``settings`` on the built ``task`` until it holds ``settings.trials`` trials
    that trained (see the module doc); Ctrl-C ends it early (``stopped``), the same call resumes.

    Args:
        settings: the study.
        task: the built task (:func:`sbrnn.datasets.summary.build_checked`), named ``settings.task``.
        parent: the parent whose top ``settings.warm_start`` recommendations are enqueued; None: no
            warm start (``parent_note`` says why, in the summary's notes).
        pruner: an Optuna pruner instead of ``settings.pruner``.
        on_start: called once with the study as found; on_trial: after each trial this process ran;
            on_wait: with the number of running trials while waiting for them.
    """
    require_optuna()
    if task.name != settings.task:
        raise SbrnnError(f"task {task.name!r} was given for a study of task {settings.task!r}")
    spec = settings.storage_spec
    storage = open_storage(spec, heartbeat=True)
    liveness = _Heartbeat() if "://" in spec else _Leases(Path(spec + ".workers"))
    try:
        study = _open_study(settings, storage, pruner or make_pruner(settings.pruner, settings.epochs))
        warm = _WarmStarter(settings, task, parent, parent_note)
        objective = _Objective(settings, task, liveness)
        ran, stopped, started = 0, False, False
        try:
            while True:
                liveness.fail_stale(study)
                trials = study.get_trials(deepcopy=False)
                warm.ensure(study, trials)
                finished = sum(map(_ran, trials))
                if not started and on_start is not None:
                    on_start(TuneStart(settings.study_name, spec, finished, settings.trials, warm.info()))
                started = True
                if finished >= settings.trials:
                    break
                running = sum(_state(t) == "running" for t in trials)
                if finished + running >= settings.trials:
                    if on_wait is not None:
                        on_wait(running)
                    time.sleep(POLL_S)
                    continue
                study.optimize(objective, n_trials=1, catch=(RunFailed,))
                ran += 1
                if on_trial is not None:
                    on_trial(_outcome(study.get_trials(deepcopy=False), objective.number))
        except KeyboardInterrupt:
            stopped = True
        trials = study.get_trials(deepcopy=False)
    finally:
        liveness.close()
    ranked = _ranked(trials)
    return TuneSummary(
        study=settings.study_name,
        storage=spec,
        task=settings.task,
        budget=settings.budget,
        target=settings.trials,
        finished=sum(map(_ran, trials)),
        ran=ran,
        states=dict(sorted(Counter(_state(t) for t in trials).items())),
        interrupted=sum(map(_interrupted, trials)),
        best=TrialRow.of(ranked[0]) if ranked else None,
        top=tuple(TrialRow.of(t) for t in ranked[:10]),
        warm_start=warm.info(),
        pruner=settings.pruner if pruner is None else type(pruner).__name__,
        space=settings.space,
        archs=settings.archs,
        records=str(settings.records),
        stopped=stopped,
    )
