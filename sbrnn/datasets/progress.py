"""How long dataset builds report how far they are: a callback the caller passes, never a display.

Builders that do long work (RAD generation, rollout collection) take ``progress: Progress | None``
and call ``progress(description, done, total)``: ``done`` of ``total`` units of the work named
``description`` (e.g. ``"collecting sbrnn/hopper/random-e400-s0-v0"``, 400 episodes) are finished.
A piece of work is reported once with ``done = 0`` when it starts, then as it advances (``done``
never decreases), the last time with ``done == total``. Without a callback nothing is reported;
what to draw is the caller's choice (the CLI draws a rich bar on stderr).
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]
"""``progress(description, done, total)``; see the module doc."""


def counter(progress: Progress | None, description: str, total: int) -> Callable[[int], None]:
    """``advance(n)``, which adds ``n`` units to a running count of the work ``description`` and
    reports the count through ``progress``; reports ``0`` of ``total`` now. Without ``progress``,
    ``advance`` does nothing."""
    if progress is None:
        return lambda n: None
    done = 0
    progress(description, done, total)

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress(description, done, total)

    return advance
