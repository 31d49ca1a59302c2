"""Claims: sweeps on one records directory share its runs; leases, takeover, and records kept."""

from __future__ import annotations

import json
import linecache
import os
import socket
import subprocess
import sys
import threading
import time
from functools import partial

import pytest
from sweep_fakes import fake_record, fake_runner, log_lines

from sbrnn.child.sweep import claims as claims_module
from sbrnn.child.sweep import coordinator, executors
from sbrnn.child.sweep.claims import Claim, Claims
from sbrnn.child.sweep.plan import plan_sweep
from sbrnn.records import read_records, read_table, record_files, write_record


def _plant(directory, run_id, generation=0, **changes) -> None:
    """A claim file written by hand (another host, another process)."""
    now = time.time()
    fields = dict(
        run_id=run_id,
        generation=generation,
        host="elsewhere",
        pid_space="",
        pid=4242,
        token="f" * 32,
        claimed_at=now,
        expires_at=now + 120,
    )
    fields.update(changes)
    (directory / ".claims").mkdir(parents=True, exist_ok=True)
    (directory / ".claims" / f"{run_id}.{generation}.claim").write_text(json.dumps(fields))


def test_a_run_is_claimed_by_one_sweep_until_released(tmp_path):
    a, b = Claims(tmp_path), Claims(tmp_path)
    try:
        assert a.claim("r1") and a.claim("r1")  # a second claim of its own is a no-op
        assert not b.claim("r1") and b.claim("r2")
        held = a.current("r1")
        assert held is not None
        assert (held.host, held.pid, held.token) == (socket.gethostname(), os.getpid(), a.token)
        assert held.expires_at - held.claimed_at == pytest.approx(claims_module.LEASE_SECONDS)
        a.release("r1")
        assert a.current("r1") is None and b.claim("r1")
        assert sorted(p.name for p in (tmp_path / ".claims").iterdir()) == ["r1.0.claim", "r2.0.claim"]
    finally:
        a.close()
        b.close()
    assert not list((tmp_path / ".claims").iterdir())  # close released them


def test_dead_holders_are_taken_over_and_live_ones_kept(tmp_path):
    mine = Claims(tmp_path)
    # another host: only an expired lease frees the run
    _plant(tmp_path, "far-live")
    _plant(tmp_path, "far-dead", expires_at=time.time() - 1)
    assert not mine.claim("far-live")
    assert mine.claim("far-dead")
    assert [p.name for p in (tmp_path / ".claims").glob("far-dead.*")] == ["far-dead.1.claim"]  # old one gone
    # this machine: a holder pid that is gone frees the run at once, a live one keeps it
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = dict(host=mine.host, pid_space=mine.pid_space)
    _plant(tmp_path, "near-dead", pid=gone.pid, **here)
    _plant(tmp_path, "near-live", pid=os.getppid(), **here)
    assert mine.claim("near-dead") and not mine.claim("near-live")
    # this process: a Claims that was closed (or lost with its thread) is dead, an open one live
    other = Claims(tmp_path)
    assert other.claim("same-process")
    assert not mine.claim("same-process")
    claims_module._LIVE_TOKENS.discard(other.token)  # as if it ended without releasing
    assert mine.claim("same-process")
    # a claim being written (empty file) is live while fresh, dead a lease after its last write
    (tmp_path / ".claims" / "half.0.claim").write_text("")
    assert not mine.claim("half")
    old = time.time() - claims_module.LEASE_SECONDS - 5
    os.utime(tmp_path / ".claims" / "half.0.claim", (old, old))
    assert mine.claim("half")
    mine.close()


def test_leases_are_renewed_and_a_takeover_is_noticed(tmp_path):
    holder = Claims(tmp_path, lease_seconds=5.0, renew_seconds=0.05).start()
    try:
        assert holder.claim("r")
        first = holder.current("r")
        assert first is not None
        time.sleep(0.4)
        renewed = holder.current("r")
        assert renewed is not None and renewed.expires_at > first.expires_at
        assert renewed.generation == first.generation and renewed.claimed_at == first.claimed_at
        # another sweep takes it over (say this one's lease lapsed): the holder lets it go
        _plant(tmp_path, "r", generation=1)
        time.sleep(0.3)
        assert "r" not in holder.held
        taker = holder.current("r")
        assert isinstance(taker, Claim) and taker.token == "f" * 32
    finally:
        holder.close()
    assert (tmp_path / ".claims" / "r.1.claim").exists()  # the taker's claim is left alone


def test_readers_ignore_the_claims_folder(tmp_path):
    plan = plan_sweep(["toy-anomaly"], [300], 2, epochs=1)
    write_record(fake_record(plan[0].config), tmp_path)
    with Claims(tmp_path) as claims:
        assert claims.claim(plan[1].run_id)
        assert [p.name for p in record_files(tmp_path)] == [f"{plan[0].run_id}.parquet"]
        assert read_table(tmp_path).column("run_id").to_pylist() == [plan[0].run_id]


def test_a_failure_never_replaces_an_ok_record(tmp_path):
    config = plan_sweep(["toy-anomaly"], [300], 1, epochs=1)[0].config

    def status():
        return [r.status for r in read_records(tmp_path)]

    write_record(fake_record(config, "failed"), tmp_path)
    write_record(fake_record(config, "failed"), tmp_path)  # a failure replaces a failure
    assert status() == ["failed"]
    write_record(fake_record(config, "ok"), tmp_path)  # ok replaces a failure (a retry)
    assert status() == ["ok"]
    path = write_record(fake_record(config, "failed"), tmp_path)
    assert status() == ["ok"] and path == tmp_path / f"{config.run_id()}.parquet"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    write_record(fake_record(config, "diverged"), tmp_path)  # a real rerun's outcome still replaces
    assert status() == ["diverged"]


def _sweep_in_thread(plan, records, log, results, sleep=0.05):
    runner = partial(fake_runner, log=str(log), sleep=sleep)
    executor = executors.InProcess(1, runner=runner)
    results.append(coordinator.run_sweep(plan, records, executor, poll_seconds=0.1))


def test_two_sweeps_on_one_directory_train_each_run_once(tmp_path):
    plan = plan_sweep(["toy-anomaly", "toy-regression"], [300], 10, epochs=1)
    log, results = tmp_path / "log", []
    args = (plan, tmp_path / "r", log, results)
    threads = [threading.Thread(target=_sweep_in_thread, args=args) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    started = [run_id for run_id, _ in log_lines(log)]
    assert sorted(started) == sorted(p.run_id for p in plan)  # each run trained once
    assert sorted(r.run_id for r in read_records(tmp_path / "r")) == sorted(p.run_id for p in plan)
    assert sum(r.finished for r in results) == len(plan)
    assert all(r.finished + r.by_others == len(plan) for r in results)
    assert all(r.finished > 0 for r in results)  # they shared the work
    assert not list((tmp_path / "r" / ".claims").iterdir())


def test_a_sweep_waits_for_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    plan = plan_sweep(["toy-anomaly"], [300], 3, epochs=1)
    held, dead = plan[0], plan[1]
    _plant(tmp_path, dead.run_id, expires_at=time.time() - 1)  # a sweep elsewhere died holding it
    holder = Claims(tmp_path)
    assert holder.claim(held.run_id)  # a live sweep trains this one
    log, results = tmp_path / "log", []
    thread = threading.Thread(target=_sweep_in_thread, args=(plan, tmp_path, log, results))
    thread.start()
    time.sleep(1.0)
    assert thread.is_alive()  # waiting for the held run
    write_record(fake_record(held.config), tmp_path)  # its holder records it and lets go
    holder.release(held.run_id)
    thread.join(30)
    [report] = results
    assert (report.finished, report.by_others, report.statuses) == (2, 1, {"ok": 2})
    assert sorted(r for r, _ in log_lines(log)) == sorted([dead.run_id, plan[2].run_id])
    holder.close()


def _interrupted_at(line: int, action) -> bool:
    """Run ``action`` with KeyboardInterrupt raised at the ``line``-th line it executes in
    :mod:`sbrnn.child.sweep.claims` (as Ctrl-C or ``kill`` would); True when it was interrupted.

    Not counted: the line event a ``with`` statement's line gets again as its block ends, just
    before its ``__exit__`` runs. Python raises a signal's KeyboardInterrupt only after a call
    returns, by when a lock's ``__exit__`` (a C method) has released it.
    """
    seen = 0
    entered: set[tuple[int, int]] = set()

    def trace(frame, event, arg):
        nonlocal seen
        if frame.f_code.co_filename != claims_module.__file__:
            return None
        if event == "line":
            where = (id(frame), frame.f_lineno)
            if where in entered and linecache.getline(
                frame.f_code.co_filename, frame.f_lineno
            ).lstrip().startswith("with "):
                return trace
            entered.add(where)
            seen += 1
            if seen == line:
                raise KeyboardInterrupt
        return trace

    sys.settrace(trace)
    try:
        action()
    except KeyboardInterrupt:
        return True
    finally:
        sys.settrace(None)
    return False


@pytest.mark.parametrize("step", ["claim", "release", "take over"])
def test_an_interrupt_at_any_line_of_a_claim_or_release_leaves_no_file_after_close(tmp_path, step):
    line = 0
    while True:
        line += 1
        records = tmp_path / f"{step}-{line}"
        if step == "take over":
            _plant(records, "r", expires_at=time.time() - 1)
        claims = Claims(records)
        if step == "release":
            assert claims.claim("r")
        action = partial(claims.release if step == "release" else claims.claim, "r")
        interrupted = _interrupted_at(line, action)
        claims.close()
        left = set(os.listdir(records / ".claims")) if (records / ".claims").exists() else set()
        dead = {"r.0.claim"} if step == "take over" else set()  # another host's dead claim may stay
        assert left <= dead, (step, line)
        if not interrupted:  # every line was interrupted once
            break
        with Claims(records) as other:  # the run is free for the next sweep
            assert other.claim("r")
    assert line > 10
