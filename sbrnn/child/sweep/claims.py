"""Claims: sweeps on one records directory share its runs, each run trained once.

Several sweeps may run on one records directory at the same time (two terminals, or machines on
a shared filesystem). Before a coordinator sends a run to a worker it *claims* it: it creates the
file ``DIR/.claims/<run_id>.<generation>.claim``, which exactly one process can do, holding the
claimer's host, pid, token, claim time and lease expiry (JSON; times in UNIX seconds). A run
claimed by another live sweep is left to it; the claim is removed once the run's record is
written (or when the sweep stops without it).

A claim file appears whole: the claim is written to a temporary file named after the claiming
:class:`Claims` (``.<token>.*.tmp``) and hard-linked to the claim's name, which fails when that
name exists (``os.link``, atomic as ``O_CREAT | O_EXCL`` is). So whatever moment Ctrl-C or SIGTERM
interrupts a claim or a release at, every file the sweep leaves carries its token, in its name or
its content, and :meth:`Claims.close` removes them all.

Leases: the holder renews its claims every :data:`RENEW_SECONDS` from a background thread
(:meth:`Claims.start`), each time moving their expiry :data:`LEASE_SECONDS` ahead. A claim can be
taken over when its lease has expired (the holder died or hangs, on any host; hosts' clocks must
agree to well within the lease, as NTP keeps them) or, at once, when its holder was a process of
this machine that no longer exists. Taking over creates the *next generation*'s file, again by a
link, so of several sweeps that find the same dead claim exactly one wins; the winner then
removes the older generations. The current claim of a run is its highest generation.

What remains: a pid reused by an unrelated process keeps a dead holder's claim until its lease
expires (two minutes, nothing lost); and a sweep that stalls for longer than the lease (a
suspended laptop) can find its runs taken over, so such a run may train twice (its record is
written once; :func:`sbrnn.records.write_record` never lets a failure replace an ``ok``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

LEASE_SECONDS = 120.0
"""How long a claim stays valid without renewal, in seconds: after that any sweep may take it over."""
RENEW_SECONDS = 30.0
"""How often a sweep renews its claims, in seconds (a quarter of the lease: three renewals may fail)."""
CLAIMS_DIR = ".claims"
"""The claims' folder inside a records directory (record readers only read ``*.parquet`` files)."""

_LIVE_TOKENS: set[str] = set()
"""Tokens of this process's open :class:`Claims` (a claim of this pid with another token is dead)."""
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """One claim file: the run, its generation, who holds it (host, pid space, pid, token) and
    when it was claimed and expires (UNIX seconds)."""

    run_id: str
    generation: int
    host: str
    pid_space: str
    pid: int
    token: str
    claimed_at: float
    expires_at: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _pid_space() -> str:
    """What tells this machine's processes apart from another's beside the host name: the boot id
    and the pid namespace on Linux (containers on one host share a name space of host names
    rarely, of pids never); empty elsewhere."""
    parts = []
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass
    return ":".join(parts)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine exists (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _parse_name(name: str) -> tuple[str, int] | None:
    """``<run_id>.<generation>.claim`` -> (run id, generation); None for other names."""
    parts = name.split(".")
    if len(parts) != 3 or parts[2] != "claim" or not parts[1].isdigit() or not parts[0]:
        return None
    return parts[0], int(parts[1])


class Claims:
    """This process's claims on the runs of the records directory ``records``.

    :meth:`claim` takes a run (False when another live sweep holds it), :meth:`release` gives it
    back; :meth:`start` renews the held claims every ``renew_seconds`` in a background thread
    (each renewal sets the expiry ``lease_seconds`` ahead); :meth:`close` stops that and releases
    every claim still held. Use as a context manager.
    """

    def __init__(
        self,
        records: str | os.PathLike,
        lease_seconds: float = LEASE_SECONDS,
        renew_seconds: float = RENEW_SECONDS,
    ) -> None:
        self.directory = Path(records) / CLAIMS_DIR
        self.lease_seconds = float(lease_seconds)
        self.renew_seconds = float(renew_seconds)
        self.host = socket.gethostname()
        self.pid_space = _pid_space()
        self.pid = os.getpid()
        self.token = uuid.uuid4().hex
        self._held: dict[str, Claim] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        _LIVE_TOKENS.add(self.token)

    # -- reading ---------------------------------------------------------------------------------

    def _files(self, run_id: str) -> dict[int, Path]:
        """The claim files of ``run_id`` by generation."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return {}
        found = {}
        for name in names:
            parsed = _parse_name(name)
            if parsed is not None and parsed[0] == run_id:
                found[parsed[1]] = self.directory / name
        return found

    def _read(self, path: Path, run_id: str, generation: int) -> Claim | None:
        """The claim in ``path``; one whose content is not (yet) readable expires a lease after the
        file was last written. None when the file is gone."""
        try:
            text = path.read_text(encoding="utf-8")
            modified = path.stat().st_mtime
        except FileNotFoundError:
            return None
        except OSError:
            text, modified = "", time.time()
        try:
            return Claim(**json.loads(text))
        except (ValueError, TypeError):  # cut short (a full disk), or being written by an older sbrnn
            return Claim(run_id, generation, "", "", 0, "", modified, modified + self.lease_seconds)

    def current(self, run_id: str) -> Claim | None:
        """The claim that holds ``run_id`` now (its highest generation), or None."""
        for generation, path in sorted(self._files(run_id).items(), reverse=True):
            claim = self._read(path, run_id, generation)
            if claim is not None:
                return claim
        return None

    def is_stale(self, claim: Claim, now: float | None = None) -> bool:
        """Whether ``claim`` may be taken over: its lease expired, or its holder was a process of this
        machine that is gone (in this process: a :class:`Claims` already closed)."""
        now = time.time() if now is None else now
        if claim.expires_at < now:
            return True
        if claim.host != self.host or claim.pid_space != self.pid_space or not claim.token:
            return False
        if claim.pid == self.pid:
            return claim.token not in _LIVE_TOKENS
        return not _pid_alive(claim.pid)

    # -- claiming --------------------------------------------------------------------------------

    def _new(self, run_id: str, generation: int) -> Claim:
        now = time.time()
        return Claim(
            run_id, generation, self.host, self.pid_space, self.pid, self.token, now, now + self.lease_seconds
        )

    def _path(self, claim: Claim) -> Path:
        return self.directory / f"{claim.run_id}.{claim.generation}.claim"

    def _written(self, claim: Claim) -> str:
        """A temporary file in the claims folder holding ``claim``, named after this :class:`Claims`
        (so :meth:`close` finds it, should an interrupt leave it behind)."""
        fd, tmp = tempfile.mkstemp(prefix=f".{self.token}.", suffix=".tmp", dir=self.directory)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(claim.to_json())
        return tmp

    def _create(self, claim: Claim) -> bool:
        """Create ``claim``'s file, whole, if no file of that run and generation exists (atomic)."""
        tmp = self._written(claim)
        try:
            os.link(tmp, self._path(claim))
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def claim(self, run_id: str) -> bool:
        """Claim ``run_id`` for this process: True when it holds the claim now (a free run, a stale
        claim taken over, or already its own), False when another live sweep holds it."""
        with self._lock:
            if run_id in self._held:
                return True
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # each failed try means another sweep won a generation meanwhile
            current = self.current(run_id)
            if current is not None and current.token == self.token:
                with self._lock:
                    self._held[run_id] = current
                return True
            if current is not None and not self.is_stale(current):
                return False
            claim = self._new(run_id, 0 if current is None else current.generation + 1)
            if self._create(claim):
                with self._lock:
                    self._held[run_id] = claim
                for generation, path in self._files(run_id).items():
                    if generation < claim.generation:
                        path.unlink(missing_ok=True)
                if current is not None:
                    _log.info(
                        "took over the claim on run %s from %s pid %s", run_id, current.host, current.pid
                    )
                return True
        return False

    def release(self, run_id: str) -> None:
        """Give ``run_id`` back: remove this process's claim file of it (another's is left alone)."""
        with self._lock:  # not while a renewal rewrites this claim's file
            claim = self._held.pop(run_id, None)
            if claim is None:
                return
            path = self._path(claim)
            found = self._read(path, run_id, claim.generation)
            if found is not None and found.token == self.token:
                path.unlink(missing_ok=True)

    @property
    def held(self) -> list[str]:
        """The run ids this process holds claims on."""
        with self._lock:
            return list(self._held)

    # -- leases ----------------------------------------------------------------------------------

    def renew(self) -> list[str]:
        """Move the expiry of every held claim ``lease_seconds`` ahead; returns the run ids whose
        claim another sweep took over meanwhile (they are no longer held)."""
        lost = []
        for run_id in self.held:
            with self._lock:  # a release of this run waits, so no renewal rewrites a released claim
                claim = self._held.get(run_id)
                if claim is None:
                    continue
                current = self.current(run_id)
                if current is None or current.token != self.token:
                    lost.append(run_id)
                    del self._held[run_id]
                    continue
                fresh = Claim(**{**asdict(claim), "expires_at": time.time() + self.lease_seconds})
                tmp = self._written(fresh)
                try:
                    os.replace(tmp, self._path(fresh))
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
                self._held[run_id] = fresh
        for run_id in lost:
            _log.warning("another sweep took over the claim on run %s (this sweep's lease lapsed)", run_id)
        return lost

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_seconds):
            try:
                self.renew()
            except OSError as exc:  # a filesystem hiccup: the next renewal tries again
                _log.warning("could not renew the sweep's claims in %s: %s", self.directory, exc)

    def start(self) -> Claims:
        """Renew the held claims every ``renew_seconds`` from a daemon thread, until :meth:`close`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._renew_loop, name="sbrnn-claims", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop renewing and remove every file of this :class:`Claims`: the claims still held, and
        any claim or temporary file an interrupted :meth:`claim` or :meth:`release` left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            self._held.clear()
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            names = []
        for name in names:
            path = self.directory / name
            if name.startswith(f".{self.token}."):
                path.unlink(missing_ok=True)
            elif (parsed := _parse_name(name)) is not None:
                found = self._read(path, *parsed)
                if found is not None and found.token == self.token:
                    path.unlink(missing_ok=True)
        _LIVE_TOKENS.discard(self.token)

    def __enter__(self) -> Claims:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
