"""Episodes into task tensors: split by episode, cut into windows, normalised.

Each episode gives one ``(inputs [T, n_x], targets [T, n_y])`` pair per task kind
(:data:`TASK_KINDS`): ``behaviour_cloning`` maps the observations ``obs_0 .. obs_{T-1}`` (the final
observation, seen after the last action, is dropped) to the actions ``a_0 .. a_{T-1}``;
``forward_dynamics`` maps ``[obs_t; a_t]`` to ``obs_{t+1} - obs_t``.

Splits and sequences. Episodes are split into train / val / test by episode: a permutation drawn
from the task seed, 5 % (rounded, at least one) for val and for test and the rest for train; for
the 5,000 episodes of hammer expert-v2 that is the paper's 4,500 / 250 / 250. Each episode is then
cut into non-overlapping windows of ``window`` steps from its start; a tail shorter than a window
is dropped, and so is an episode shorter than one window. Without a ``window`` the sequences are
whole episodes when all episodes have one length, else windows of the shortest episode's length.
Nothing is padded, so nothing needs a mask: every step of every sequence is a real step. A window
starts from the zero state mid-episode; in the environment the state runs across the episode.

Normalisation. Per-feature mean and std of inputs and of targets over every step of the train
split's episodes, in the units of the observations and actions; sequences are
``(v - mean) / std``. A feature is *near-constant* in the train split when its std is below
``STD_FLOOR * (1 + |mean|)`` (a tolerance relative to the feature's own scale, as ``numpy.isclose``
takes one: 1e-3 of its mean, and never below 1e-3 in its units): its std then counts as 1, so it
is centred but not blown up. Dividing by such a std turned a few thousandths of a unit in
held-out episodes into thousands of standard deviations (5 random Adroit hammer episodes: a std of
8e-5, test inputs up to 12,407, a test loss of 10^5). Near-constant features are a logged warning
naming them, and so are validation or test values more than :data:`HELD_OUT_LIMIT` train stds
from the train mean (episodes the train split does not cover; more episodes help).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from sbrnn.datasets.envs import check_int
from sbrnn.errors import SbrnnError

_LOG = logging.getLogger(__name__)

TASK_KINDS = ("behaviour_cloning", "forward_dynamics")
HOLDOUT_FRACTION = 0.05
"""Share of a dataset's episodes in val, and again in test (rounded, at least one each)."""
STD_FLOOR = 1e-3
"""A feature whose train std is below ``STD_FLOOR * (1 + |mean|)`` is near-constant (std taken as 1)."""
NORMALISATION = "relative-floor-1e-3"
"""Names the normalisation rule, for cache keys of normalised tensors (the rule changed from an
absolute floor of 1e-6)."""
HELD_OUT_LIMIT = 100.0
"""Held-out values further than this many train stds from the train mean are warned of."""


def split_counts(episodes: int) -> tuple[int, int, int]:
    """``(train, val, test)`` episode counts: val and test 5 % each, rounded, at least one."""
    if episodes < 3:
        raise SbrnnError(f"a dataset of {episodes} episodes cannot be split; allowed: at least 3 episodes")
    held = max(1, int(episodes * HOLDOUT_FRACTION + 0.5))
    return episodes - 2 * held, held, held


def split_episodes(episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Episode indices of train, val and test: a permutation drawn from ``seed``, each part sorted."""
    n_train, n_val, _ = split_counts(episodes)
    order = np.random.default_rng([int(seed), 2]).permutation(episodes)
    parts = order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
    train, val, test = (np.sort(p) for p in parts)
    return train, val, test


def resolve_window(lengths: np.ndarray, window: int | None) -> int:
    """The sequence length in steps: ``window`` if given (checked against the episode lengths
    ``[episodes]``), else the shortest episode's length."""
    if window is None:
        return int(lengths.min())
    check_int("window", window, 1)
    if window > lengths.max():
        raise SbrnnError(
            f"window = {window} is longer than every episode; allowed: 1 to {int(lengths.max())}"
        )
    return int(window)


def cut_windows(arrays: list[np.ndarray], window: int) -> np.ndarray:
    """Non-overlapping windows from the start of each ``[T_i, d]`` array -> ``[N, window, d]``;
    a tail shorter than ``window`` is dropped."""
    return np.concatenate([a[: len(a) // window * window].reshape(-1, window, a.shape[1]) for a in arrays])


def _pairs(kind: str, observations: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One episode's ``(inputs [T, n_x], targets [T, n_y])`` for task ``kind``."""
    if kind == "behaviour_cloning":
        return observations[:-1], actions
    return np.concatenate([observations[:-1], actions], axis=1), np.diff(observations, axis=0)


def near_constant(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Which features ``[d]`` are near-constant: std below ``STD_FLOOR * (1 + |mean|)``."""
    return np.asarray(std) < STD_FLOOR * (1.0 + np.abs(np.asarray(mean)))


def _moments(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-feature float64 ``(mean [d], std [d], near-constant [d] bool)`` over every row of the
    ``[T_i, d]`` arrays; a near-constant feature's std is 1 (:func:`near_constant`)."""
    stacked = np.concatenate(arrays).astype(np.float64)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    constant = near_constant(mean, std)
    return mean, np.where(constant, 1.0, std), constant


def _features(indices: np.ndarray, limit: int = 8) -> str:
    """``3, 7, 12`` (the first ``limit``, then ``...``)."""
    shown = ", ".join(str(int(i)) for i in indices[:limit])
    return shown + (", ..." if len(indices) > limit else "")


def _warn_near_constant(dataset_id: str, what: str, constant: np.ndarray) -> None:
    if constant.any():
        _LOG.warning(
            "dataset %r: %d of %d %s features are near-constant in the train split (std below %g x "
            "(1 + |mean|): features %s); they are centred, not scaled",
            dataset_id,
            int(constant.sum()),
            len(constant),
            what,
            STD_FLOOR,
            _features(np.flatnonzero(constant)),
        )


def _warn_far(dataset_id: str, what: str, held_out: list[np.ndarray]) -> None:
    """Warn when normalised validation/test values lie beyond :data:`HELD_OUT_LIMIT` train stds."""
    if not held_out:
        return
    peak = np.abs(np.concatenate(held_out)).max(axis=0)
    far = np.flatnonzero(peak > HELD_OUT_LIMIT)
    if len(far):
        order = far[np.argsort(-peak[far])]
        _LOG.warning(
            "dataset %r: validation and test %s lie up to %.0f train standard deviations from the "
            "train mean (features %s); the train split does not cover those episodes (more "
            "episodes would)",
            dataset_id,
            what,
            float(peak[order[0]]),
            _features(order),
        )


def build_tensors(dataset, kind: str, seed: int, window: int) -> dict[str, torch.Tensor]:
    """Split, normalise and window the Minari ``dataset`` for task ``kind`` (see the module doc).

    Returns ``{split}_x [N, window, n_x]`` and ``{split}_y [N, window, n_y]`` float32 for each
    split, the train split's ``input_mean``, ``input_std`` ``[n_x]`` and ``target_mean``,
    ``target_std`` ``[n_y]`` float64, and ``episodes`` ``[3]``: the episodes in train, val, test.
    """
    episodes = list(dataset.iterate_episodes())
    pairs = [
        _pairs(kind, np.asarray(e.observations, np.float64), np.asarray(e.actions, np.float64))
        for e in episodes
    ]
    parts = split_episodes(len(pairs), seed)
    in_mean, in_std, in_constant = _moments([pairs[i][0] for i in parts[0]])
    out_mean, out_std, out_constant = _moments([pairs[i][1] for i in parts[0]])
    name = getattr(dataset, "id", "?")
    _warn_near_constant(name, "input", in_constant)
    _warn_near_constant(name, "target", out_constant)
    held_out: dict[str, list[np.ndarray]] = {"inputs": [], "targets": []}
    tensors = {
        "input_mean": torch.from_numpy(in_mean),
        "input_std": torch.from_numpy(in_std),
        "target_mean": torch.from_numpy(out_mean),
        "target_std": torch.from_numpy(out_std),
        "episodes": torch.tensor([len(p) for p in parts]),
    }
    for split, indices in zip(("train", "val", "test"), parts):
        x = cut_windows([(pairs[i][0] - in_mean) / in_std for i in indices], window)
        y = cut_windows([(pairs[i][1] - out_mean) / out_std for i in indices], window)
        if len(x) == 0:
            raise SbrnnError(
                f"window = {window} leaves no sequences in the {split} split of {dataset.id!r}; "
                "allowed: a window no longer than its episodes"
            )
        tensors[f"{split}_x"] = torch.from_numpy(x).float()
        tensors[f"{split}_y"] = torch.from_numpy(y).float()
        if split != "train":
            held_out["inputs"].append(x.reshape(-1, x.shape[-1]))
            held_out["targets"].append(y.reshape(-1, y.shape[-1]))
    for what, arrays in held_out.items():
        _warn_far(name, what, arrays)
    return tensors
