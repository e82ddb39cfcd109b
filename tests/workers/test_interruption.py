"""The worker's interruption: an exception raised inside the handler from another thread, only
while the runtime has the handler call armed."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from workers.context import JobTimeout
from workers.interruption import Interruption


@pytest.fixture
def interruption() -> Iterator[Interruption]:
    previous = signal.getsignal(Interruption.signum)
    interruption = Interruption()
    assert interruption.install()
    yield interruption
    signal.signal(Interruption.signum, previous)


def test_an_armed_call_is_interrupted_from_another_thread(interruption: Interruption) -> None:
    def sleep_armed() -> None:
        with interruption.armed(True):
            threading.Timer(0.05, interruption.interrupt, args=(JobTimeout,)).start()
            time.sleep(5)

    started = time.monotonic()
    with pytest.raises(JobTimeout):
        sleep_armed()
    assert time.monotonic() - started < 2


def test_a_request_or_a_signal_after_the_call_raises_nothing(interruption: Interruption) -> None:
    with interruption.armed(True):
        pass
    interruption.interrupt(JobTimeout)
    os.kill(os.getpid(), Interruption.signum)
    time.sleep(0.05)  # the signal handler runs here, and must not raise


def test_a_call_armed_off_is_not_interrupted(interruption: Interruption) -> None:
    timer = threading.Timer(0.02, interruption.interrupt, args=(JobTimeout,))
    with interruption.armed(False):
        timer.start()
        time.sleep(0.1)
    timer.join()


def test_off_the_main_thread_the_signal_cannot_be_installed() -> None:
    installed: list[bool] = []
    thread = threading.Thread(target=lambda: installed.append(Interruption().install()))
    thread.start()
    thread.join()
    assert installed == [False]
