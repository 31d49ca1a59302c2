"""Classic RNN benchmarks generated from the seed: the adding problem, parity and delayed recall.

- ``adding`` (``mse``, 2 in, 1 out): input 0 is a value uniform in [0, 1) at every step, input 1
  a marker, 1 at two steps and 0 elsewhere: one uniform in the first half (steps ``0 ..
  ceil(T/2) - 1``), one in the second, as in Hochreiter & Schmidhuber's problem. The target at
  step ``t`` is the sum of the marked values seen up to ``t`` (0, then the first value, then
  both), so the last step's target is the classic answer and the loss is the trainer's ``mse``
  at every step. A network without memory can only say ``value x marker`` at the marker itself.
- ``parity`` (``cross_entropy``, 1 in, 2 out): a sequence of ``T`` bits fed as -1 / +1, the label
  their sum modulo 2, read after the last bit. Validation and test sequences are distinct bit
  patterns that no training sequence has (training sequences are drawn, with repeats, from the
  remaining patterns), so a memorised lookup scores chance and only the running XOR generalises.
- ``recall`` (``cross_entropy``, ``K + 2`` in, ``K`` out): a symbol one-hot among ``K`` at step 0
  with a "store" flag (input ``K``); at each middle step, with probability ``distractor_prob``, a
  random distractor symbol (no flag), else all zeros; at the last step only a "recall" flag
  (input ``K + 1``). The label is the stored symbol: the network must keep it for ``T - 1`` steps
  through distractors of the same alphabet.

Every split draws from its own generator, derived from the seed by hashing; tensors are float32
and cached under ``$SBRNN_CACHE/classic`` keyed by every option.
"""

from __future__ import annotations

import hashlib

import torch

from sbrnn.datasets import cache
from sbrnn.datasets.task import Split, Task
from sbrnn.errors import SbrnnError

GENERATOR_VERSION = 1
"""Bumped whenever generation changes what a key produces."""
SPLITS = ("train", "val", "test")
MAX_SEQUENCES = 1_000_000
MAX_PARITY_STEPS = 20
"""Parity enumerates the ``2^T`` bit patterns to keep the splits disjoint."""


def _check_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SbrnnError(f"{name} {value!r} is not allowed; allowed: an integer in [{low:,}, {high:,}]")
    return value


def _check_sizes(n_train, n_val, n_test) -> tuple[int, int, int]:
    return (
        _check_int("n_train", n_train, 1, MAX_SEQUENCES),
        _check_int("n_val", n_val, 1, MAX_SEQUENCES),
        _check_int("n_test", n_test, 1, MAX_SEQUENCES),
    )


def _generator(kind: str, seed: int, part: str) -> torch.Generator:
    digest = hashlib.sha256(f"classic:{kind}:{seed}:{part}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def _adding_split(n: int, steps: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [n, steps, 2]`` (value, marker), ``y [n, steps, 1]`` (marked values summed so far)."""
    half = (steps + 1) // 2
    values = torch.rand(n, steps, generator=g)
    first = torch.randint(0, half, (n,), generator=g)
    second = torch.randint(half, steps, (n,), generator=g)
    marker = torch.zeros(n, steps)
    rows = torch.arange(n)
    marker[rows, first] = 1.0
    marker[rows, second] = 1.0
    return torch.stack([values, marker], -1), (values * marker).cumsum(1).unsqueeze(-1)


def _parity_splits(
    seed: int, steps: int, sizes: tuple[int, int, int]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``x [n, steps, 1]`` bits as -1 / +1, ``y [n]`` their parity; val and test patterns are
    distinct and absent from train."""
    n_train, n_val, n_test = sizes
    patterns = torch.randperm(2**steps, generator=_generator("parity", seed, "patterns"))
    pool = patterns[n_val + n_test :]
    train = pool[torch.randint(0, len(pool), (n_train,), generator=_generator("parity", seed, "train"))]
    out = []
    for chosen in (train, patterns[:n_val], patterns[n_val : n_val + n_test]):
        bits = (chosen.view(-1, 1) >> torch.arange(steps)) & 1
        out.append(((2.0 * bits - 1.0).unsqueeze(-1), bits.sum(1) % 2))
    return out


def _recall_split(n: int, steps: int, symbols: int, p: float, g: torch.Generator):
    """``x [n, steps, symbols + 2]``, ``y [n]`` (the symbol stored at step 0)."""
    label = torch.randint(0, symbols, (n,), generator=g)
    x = torch.zeros(n, steps, symbols + 2)
    rows = torch.arange(n)
    x[rows, 0, label] = 1.0
    x[:, 0, symbols] = 1.0
    distractor = torch.randint(0, symbols, (n, steps - 2), generator=g)
    shown = torch.rand(n, steps - 2, generator=g) < p
    middle = torch.nn.functional.one_hot(distractor, symbols).float() * shown.unsqueeze(-1)
    x[:, 1:-1, :symbols] = middle
    x[:, -1, symbols + 1] = 1.0
    return x, label


def _build(name: str, kind: str, seed: int, options: dict, make, loss: str, n_y: int) -> Task:
    """Generate (or load) the three splits with ``make() -> [(x, y)] * 3`` and wrap them as a Task."""
    _check_int("seed", seed, 0, 2**63 - 1)
    params = {"kind": kind, "seed": seed, **options, "version": GENERATOR_VERSION}

    def build() -> dict[str, torch.Tensor]:
        return {f"{s}_{k}": t for s, (x, y) in zip(SPLITS, make()) for k, t in (("x", x), ("y", y))}

    tensors, entry = cache.load_or_build("classic", params, build)
    splits = [Split(tensors[f"{s}_x"], tensors[f"{s}_y"]) for s in SPLITS]
    meta = {
        "generator": "classic",
        "kind": kind,
        "seed": seed,
        "generation": options,
        "cache": {"key": entry.key, "path": str(entry.path), "hit": entry.hit},
    }
    x = splits[0].x
    return Task(name, x.shape[2], n_y, x.shape[1], loss, splits[0], splits[1], splits[2], meta=meta)


def adding(
    name: str, seed: int = 0, steps: int = 50, n_train: int = 2_000, n_val: int = 500, n_test: int = 500
) -> Task:
    """The adding problem: ``[N, steps, 2]`` inputs, ``[N, steps, 1]`` running-sum targets (``mse``)."""
    _check_int("steps", steps, 2, 10_000)
    sizes = _check_sizes(n_train, n_val, n_test)

    def make():
        return [_adding_split(n, steps, _generator("adding", seed, s)) for s, n in zip(SPLITS, sizes)]

    options = {"steps": steps, "n_train": n_train, "n_val": n_val, "n_test": n_test}
    return _build(name, "adding", seed, options, make, "mse", 1)


def parity(
    name: str, seed: int = 0, steps: int = 10, n_train: int = 2_000, n_val: int = 250, n_test: int = 250
) -> Task:
    """Parity of ``steps`` bits: ``[N, steps, 1]`` inputs, ``[N]`` labels in {0, 1}.

    ``n_val + n_test`` may use at most half of the ``2^steps`` patterns (the rest feed training).
    """
    _check_int("steps", steps, 2, MAX_PARITY_STEPS)
    sizes = _check_sizes(n_train, n_val, n_test)
    if n_val + n_test > 2 ** (steps - 1):
        raise SbrnnError(
            f"n_val + n_test {n_val + n_test} is not allowed at steps {steps}; allowed: at most "
            f"{2 ** (steps - 1):,} (half of the {2**steps:,} bit patterns)"
        )
    options = {"steps": steps, "n_train": n_train, "n_val": n_val, "n_test": n_test}
    return _build(
        name, "parity", seed, options, lambda: _parity_splits(seed, steps, sizes), "cross_entropy", 2
    )


def recall(
    name: str,
    seed: int = 0,
    steps: int = 25,
    symbols: int = 8,
    distractor_prob: float = 0.5,
    n_train: int = 2_000,
    n_val: int = 500,
    n_test: int = 500,
) -> Task:
    """Delayed recall: ``[N, steps, symbols + 2]`` inputs, ``[N]`` labels in ``[0, symbols)``."""
    _check_int("steps", steps, 3, 10_000)
    _check_int("symbols", symbols, 2, 1_000)
    p = distractor_prob
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise SbrnnError(f"distractor_prob {p!r} is not allowed; allowed: a number in [0, 1]")
    sizes = _check_sizes(n_train, n_val, n_test)

    def make():
        return [
            _recall_split(n, steps, symbols, float(p), _generator("recall", seed, s))
            for s, n in zip(SPLITS, sizes)
        ]

    options = {
        "steps": steps,
        "symbols": symbols,
        "distractor_prob": float(p),
        "n_train": n_train,
        "n_val": n_val,
        "n_test": n_test,
    }
    return _build(name, "recall", seed, options, make, "cross_entropy", symbols)
