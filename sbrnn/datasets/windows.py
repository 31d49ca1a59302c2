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
split's episodes (a std below :data:`STD_FLOOR` counts as 1), in the units of the observations
and actions; sequences are ``(v - mean) / std``.
"""

from __future__ import annotations

import numpy as np
import torch

from sbrnn.datasets.envs import check_int
from sbrnn.errors import SbrnnError

TASK_KINDS = ("behaviour_cloning", "forward_dynamics")
HOLDOUT_FRACTION = 0.05
"""Share of a dataset's episodes in val, and again in test (rounded, at least one each)."""
STD_FLOOR = 1e-6


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


def _moments(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature float64 ``(mean [d], std [d])`` over every row of the ``[T_i, d]`` arrays; a std
    below :data:`STD_FLOOR` is 1."""
    stacked = np.concatenate(arrays).astype(np.float64)
    std = stacked.std(axis=0)
    return stacked.mean(axis=0), np.where(std < STD_FLOOR, 1.0, std)


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
    in_mean, in_std = _moments([pairs[i][0] for i in parts[0]])
    out_mean, out_std = _moments([pairs[i][1] for i in parts[0]])
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
    return tensors
