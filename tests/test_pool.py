"""transport/pool.py: tasks inline or on threads, a stop that ends back-off sleeps and wakes blocked I/O."""

from __future__ import annotations

import threading
import time

import pytest

from dcmnet_cli.transport.pool import Pool


class FakeDriver:
    def __init__(self) -> None:
        self.interrupted = 0

    def interrupt(self) -> None:
        self.interrupted += 1


def test_one_job_runs_every_task_inline_in_order() -> None:
    seen: list[tuple[int, str]] = []
    Pool().run(3, 1, lambda index: seen.append((index, threading.current_thread().name)))
    assert seen == [(0, "MainThread"), (1, "MainThread"), (2, "MainThread")]


def test_several_jobs_run_every_task_once_on_worker_threads() -> None:
    seen: list[tuple[int, str]] = []
    lock = threading.Lock()

    def task(index: int) -> None:
        time.sleep(0.01)
        with lock:
            seen.append((index, threading.current_thread().name))

    Pool().run(5, 2, task)
    assert sorted(index for index, _ in seen) == [0, 1, 2, 3, 4]
    assert {name for _, name in seen} <= {"store-1", "store-2"} and len({name for _, name in seen}) == 2


def test_a_failing_task_stops_the_others_and_is_raised_after_the_join() -> None:
    started: list[int] = []
    pool = Pool()

    def task(index: int) -> None:
        started.append(index)
        if index == 0:
            raise RuntimeError("bug in task 0")
        time.sleep(0.05)

    with pytest.raises(RuntimeError, match="bug in task 0"):
        pool.run(20, 2, task)
    assert pool.stopping
    assert len(started) < 20  # the queue was not worked through after the failure


def test_a_stop_before_a_sleep_makes_it_return_at_once() -> None:
    pool = Pool()
    pool.stop()
    started = time.monotonic()
    pool.sleep(5.0)
    assert time.monotonic() - started < 1.0


def test_a_stop_from_another_thread_ends_a_sleep_and_interrupts_tracked_drivers() -> None:
    pool = Pool()
    tracked, untracked = FakeDriver(), FakeDriver()
    pool.track(tracked)
    pool.track(untracked)
    pool.untrack(untracked)
    stopper = threading.Timer(0.1, pool.stop)
    stopper.start()
    try:
        started = time.monotonic()
        pool.sleep(10.0)
        assert time.monotonic() - started < 5.0
    finally:
        stopper.join()
    assert pool.stopping
    assert (tracked.interrupted, untracked.interrupted) == (1, 0)


def test_a_sleep_without_a_stop_lasts_its_time() -> None:
    pool = Pool()
    started = time.monotonic()
    pool.sleep(0.05)
    assert time.monotonic() - started >= 0.045
    assert not pool.stopping
