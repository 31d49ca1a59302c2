"""A parent on disk without pickle: skops (trusted types only), XGBoost UBJSON and a manifest.

A parent directory holds::

    manifest.json            format, schema version, sbrnn version, name and fit time, feature
                             names, curve points, training tasks (dims, loss, traits, budgets),
                             typical traits, band floor, the training records' SHA-256 and run
                             ids, per-file SHA-256, the metrics
    rf_curve.skops           RandomForestRegressor             (skops)
    rf_converges.skops       RandomForestClassifier            (skops; absent when constant)
    xgb_curve_<i>.ubj        XGBRegressor member i             (XGBoost's own UBJSON)
    xgb_converges.ubj        XGBClassifier
    ranker.ubj               XGBRegressor of within-task z-scores, when the parent orders by it
    mlp_curve_<i>.skops      scaled MLPRegressor member i      (skops)
    mlp_converges.skops      scaled MLPClassifier              (skops)

Loading reads the manifest as JSON, refuses a foreign format, another schema version or other
feature names, checks every file's SHA-256 against the manifest *before* opening it, and opens
skops files only when every type they hold is a scikit-learn/numpy type skops trusts or one of
:data:`SKOPS_TRUSTED`. Nothing is unpickled; each refusal is one :class:`SbrnnError` line. A
parent written by another sbrnn version (same schema) loads with a warning naming both versions.

:func:`load_shipped` loads the parent that ships with the package (``sbrnn/parent/zoo``, fitted on
the committed meta-datasets ``data/zoo-v1``, ``data/zoo-test``, ``data/zoo-test3`` and ``data/zoo-test4``
by ``sbrnn parent fit data/zoo-v1 data/zoo-test data/zoo-test3 data/zoo-test4 --model xgb --members 3
--name zoo-v1+zoo-test+zoo-test3+zoo-test4 --out sbrnn/parent/zoo``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from sbrnn import __version__
from sbrnn.errors import SbrnnError
from sbrnn.io import atomic_write, atomic_write_text
from sbrnn.parent.features import CURVE_POINTS, FEATURE_NAMES, TaskContext
from sbrnn.parent.models import KINDS, ConfigRanker, ConvergenceClassifier, CurveRegressor, Parent

FORMAT = "sbrnn-parent"
STORE_VERSION = 3
"""2: relative curve targets at CURVE_POINTS fractions, task contexts with traits, band floor;
3: the ranker regresses within-task z-scores (2's was a pairwise ``XGBRanker``, whose scores run
the other way, so a version-2 parent is refused: refit it)."""
SHIPPED = "zoo"
"""The package-data folder of the shipped parent (``sbrnn/parent/zoo``)."""
MANIFEST = "manifest.json"
SKOPS_TRUSTED = (
    "sklearn.tree._tree.Tree",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
)
"""Types beyond skops' defaults that a parent's skops files may hold: tree arrays and the MLP's
optimizer state, both plain scikit-learn data holders."""

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _expected_types():
    import xgboost
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.pipeline import Pipeline

    return {
        ("rf", "curve"): RandomForestRegressor,
        ("rf", "converges"): RandomForestClassifier,
        ("xgb", "curve"): xgboost.XGBRegressor,
        ("xgb", "converges"): xgboost.XGBClassifier,
        ("xgb", "ranker"): xgboost.XGBRegressor,
        ("mlp", "curve"): TransformedTargetRegressor,
        ("mlp", "converges"): Pipeline,
    }


def _write_estimator(estimator, kind: str, path: Path) -> None:
    if kind == "xgb":
        atomic_write(path, estimator.save_model)
    else:
        import skops.io

        atomic_write(path, lambda tmp: skops.io.dump(estimator, tmp))


def _read_estimator(kind: str, role: str, path: Path):
    expected = _expected_types()[kind, role]
    try:
        if kind == "xgb":
            estimator = expected()
            estimator.load_model(path)
            return estimator
        import skops.io

        untrusted = [t for t in skops.io.get_untrusted_types(file=path) if t not in SKOPS_TRUSTED]
        if untrusted:
            raise SbrnnError(
                f"parent file {path} holds types sbrnn does not trust ({', '.join(untrusted)}); "
                "not loading it"
            )
        estimator = skops.io.load(path, trusted=list(SKOPS_TRUSTED))
    except SbrnnError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one clear error
        raise SbrnnError(f"parent file {path} cannot be read: {' '.join(str(exc).split())}") from None
    if not isinstance(estimator, expected):
        raise SbrnnError(f"parent file {path} holds a {type(estimator).__name__}, not a {expected.__name__}")
    return estimator


def save_parent(parent: Parent, directory: str | os.PathLike, metrics: dict | None = None) -> Path:
    """Write ``parent`` (and the ``metrics`` report) to ``directory``; returns the manifest path.

    Files an earlier manifest in ``directory`` listed are removed first; the manifest is written
    last, atomically, so a half-written parent has no manifest and is never loaded.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / MANIFEST
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
            stale = list(old.get("files", {})) if isinstance(old, dict) else []
        except (OSError, ValueError):
            stale = []
        manifest_path.unlink()
        for name in stale:
            if isinstance(name, str) and _NAME.match(name):
                (directory / name).unlink(missing_ok=True)
    files: dict[str, str] = {}
    models: dict[str, dict] = {}
    ext = {"rf": "skops", "mlp": "skops", "xgb": "ubj"}
    for kind, regressor in parent.regressors.items():
        curve_files = []
        for i, member in enumerate(regressor.members_):
            name = f"{kind}_curve.{ext[kind]}" if kind == "rf" else f"{kind}_curve_{i}.{ext[kind]}"
            _write_estimator(member, kind, directory / name)
            curve_files.append(name)
        classifier = parent.classifiers[kind]
        converges_file = None
        if classifier.estimator_ is not None:
            converges_file = f"{kind}_converges.{ext[kind]}"
            _write_estimator(classifier.estimator_, kind, directory / converges_file)
        converges = {"file": converges_file, "constant": classifier.constant_}
        for name in [*curve_files, *([converges_file] if converges_file else [])]:
            files[name] = sha256_file(directory / name)
        models[kind] = {
            "params": {**regressor.params(), "seed": regressor.seed},
            "n_outputs": regressor.n_outputs_,
            "curve_files": curve_files,
            "converges": converges,
        }
    ranker = None
    if parent.ranker is not None:
        ranker = "ranker.ubj"
        _write_estimator(parent.ranker.estimator_, "xgb", directory / ranker)
        files[ranker] = sha256_file(directory / ranker)
    manifest = {
        "format": FORMAT,
        "schema_version": STORE_VERSION,
        "sbrnn_version": __version__,
        "name": parent.name,
        "fitted_at": parent.fitted_at,
        "feature_names": list(parent.feature_names),
        "curve_points": CURVE_POINTS,
        "default_model": parent.default_kind,
        "tasks": {t: asdict(c) for t, c in parent.tasks.items()},
        "budgets": {t: list(b) for t, b in parent.budgets.items()},
        "typical_traits": parent.typical,
        "band_floor": parent.band_floor,
        "records_sha256": parent.records_sha256,
        "training_runs": list(parent.training_runs),
        "models": models,
        "ranker": ranker,
        "files": files,
        "metrics": metrics or {},
    }
    return atomic_write_text(manifest_path, json.dumps(manifest, indent=1, default=str))


def read_manifest(directory: str | os.PathLike) -> dict:
    """The checked manifest of a parent directory (format, version, features, file hashes)."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise SbrnnError(f"{directory} is not a parent directory: it has no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SbrnnError(f"{path} is not readable JSON: {' '.join(str(exc).split())}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SbrnnError(f"{path} is not an sbrnn parent manifest (format {FORMAT!r} expected)")
    if manifest.get("schema_version") != STORE_VERSION:
        raise SbrnnError(
            f"{path} was written with parent schema version {manifest.get('schema_version')!r}; this "
            f"sbrnn reads version {STORE_VERSION}: refit the parent"
        )
    if manifest.get("feature_names") != list(FEATURE_NAMES):
        raise SbrnnError(f"{path} lists other features than this sbrnn builds; refit the parent")
    files = manifest.get("files")
    models = manifest.get("models")
    if not isinstance(files, dict) or not isinstance(models, dict) or not models:
        raise SbrnnError(f"{path} lists no model files")
    for name in files:
        if not (isinstance(name, str) and _NAME.match(name) and name not in (".", "..")):
            raise SbrnnError(f"{path} names a file outside the parent directory: {name!r}")
    for kind, entry in models.items():
        if kind not in KINDS:
            raise SbrnnError(f"{path} names an unknown model {kind!r}; allowed: {', '.join(KINDS)}")
        named = [*entry.get("curve_files", []), entry.get("converges", {}).get("file")]
        for name in filter(None, named):
            if name not in files:
                raise SbrnnError(f"{path} uses file {name!r} without its sha256")
    if manifest.get("ranker") is not None and manifest["ranker"] not in files:
        raise SbrnnError(f"{path} uses file {manifest['ranker']!r} without its sha256")
    for name, digest in files.items():
        file = directory / name
        if not file.is_file():
            raise SbrnnError(f"parent file {file} is missing")
        if sha256_file(file) != digest:
            raise SbrnnError(
                f"parent file {file} was modified (sha256 differs from {MANIFEST}); not loading it"
            )
    return manifest


def load_parent(directory: str | os.PathLike) -> tuple[Parent, dict]:
    """The :class:`Parent` in ``directory`` and its manifest; see the module doc for the checks."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    regressors, classifiers = {}, {}
    for kind, entry in manifest["models"].items():
        params = entry["params"]
        regressor = CurveRegressor(
            kind,
            n_estimators=params.get("n_estimators"),
            max_depth=params.get("max_depth"),
            n_members=params.get("n_members"),
            seed=params.get("seed", 0),
        )
        regressor.members_ = [_read_estimator(kind, "curve", directory / n) for n in entry["curve_files"]]
        regressor.n_outputs_ = int(entry["n_outputs"])
        classifier = ConvergenceClassifier(kind, seed=params.get("seed", 0))
        classifier.classes_ = np.array([False, True])
        classifier.constant_ = float(entry["converges"]["constant"])
        file = entry["converges"]["file"]
        classifier.estimator_ = None if file is None else _read_estimator(kind, "converges", directory / file)
        regressors[kind], classifiers[kind] = regressor, classifier
    if next(iter(regressors.values())).n_outputs_ != CURVE_POINTS:
        raise SbrnnError(f"{directory / MANIFEST} is inconsistent: its models predict another curve length")
    if manifest.get("sbrnn_version") != __version__:
        warnings.warn(
            f"parent {directory} was written by sbrnn {manifest.get('sbrnn_version')}; this is sbrnn "
            f"{__version__} (same parent schema {STORE_VERSION}: loading it)",
            RuntimeWarning,
            stacklevel=2,
        )
    ranker = None
    if manifest.get("ranker"):
        ranker = ConfigRanker(kind="xgb")
        ranker.estimator_ = _read_estimator("xgb", "ranker", directory / manifest["ranker"])
    parent = Parent(
        regressors,
        classifiers,
        manifest["default_model"],
        tasks={t: TaskContext(**c) for t, c in manifest.get("tasks", {}).items()},
        budgets={t: tuple(b) for t, b in manifest.get("budgets", {}).items()},
        typical=manifest.get("typical_traits", {}),
        band_floor=float(manifest.get("band_floor", 0.0)),
        training_runs=tuple(manifest.get("training_runs", [])),
        name=manifest.get("name", "custom"),
        fitted_at=manifest.get("fitted_at", ""),
        records_sha256=manifest.get("records_sha256") or "",
        ranker=ranker,
    )
    parent.kind(manifest["default_model"])
    return parent, manifest


def shipped_directory() -> Path:
    """Where the shipped parent's files are (package data)."""
    from importlib import resources

    return Path(str(resources.files("sbrnn.parent").joinpath(SHIPPED)))


def load_shipped() -> tuple[Parent, dict]:
    """The parent that ships with sbrnn (see the module doc); an :class:`SbrnnError` when this
    installation has none."""
    directory = shipped_directory()
    if not (directory / MANIFEST).is_file():
        raise SbrnnError(
            f"this sbrnn installation ships no parent ({directory} has no {MANIFEST}); fit one with "
            "`sbrnn parent fit RECORDS --out DIR` and pass it as the model"
        )
    return load_parent(directory)


def open_parent(directory: str | os.PathLike | None = None) -> Parent:
    """The parent in ``directory`` (:func:`load_parent`), or the shipped one when None."""
    return (load_shipped() if directory is None else load_parent(directory))[0]
