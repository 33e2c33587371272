"""Stopping: SIGTERM is a clean stop like Ctrl-C, and worker processes die with their parent.

Ctrl-C (SIGINT) raises ``KeyboardInterrupt``, and every long loop of strabench stops cleanly on
it: files complete, the run in flight resumable, the command that resumes printed. SIGTERM --
what ``kill``, a container stop, systemd or a batch system sends -- used to end the process on
the spot, and the worker processes of ``run --jobs N`` went on training under pid 1 with their
locks held. So:

* ``stop_on_sigterm()`` (the CLI wraps every command in it) makes SIGTERM raise ``Terminated``,
  a ``KeyboardInterrupt``: the same clean stop. The exit code says which signal it was:
  ``interrupt_exit_code()`` is 128 + the signal number, the shell's convention (130 for
  Ctrl-C, 143 for SIGTERM).
* ``die_with_parent(pid)``, first thing in a worker: the kernel sends it SIGTERM when its
  parent dies, however it died, SIGKILL included (Linux ``prctl(PR_SET_PDEATHSIG)``), and a
  thread that polls the parent does the same everywhere else (and backs the kernel up).

This module changes process-wide signal handling, so only entry points call it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["Terminated", "die_with_parent", "interrupt_exit_code", "stop_on_sigterm"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_PARENT_POLL_S = 1.0
#: The stop signal this process received last (SIGINT unless a SIGTERM came): what the exit
#: code reports. A record of a process-wide fact, written only by the handler below.
_received: list[int] = []


class Terminated(KeyboardInterrupt):
    """SIGTERM (or another stop signal) arrived: stop cleanly, as on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)
    raise Terminated(signum)


def interrupt_exit_code(exc: BaseException | None = None) -> int:
    """128 + the signal that stopped the process: from ``exc`` when given, else the last one
    ``stop_on_sigterm`` saw (SIGINT, 130, when none did)."""
    signum = getattr(exc, "signum", None)
    if signum is None:
        signum = _received[-1] if _received else signal.SIGINT
    return 128 + int(signum)


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """While inside, SIGTERM raises ``Terminated`` in the main thread; the previous handler is
    restored on exit. Does nothing off the main thread, or where SIGTERM is ignored (the
    process was told to ignore it: respected, as Python respects an ignored SIGINT)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:
        yield
        return
    _received.clear()
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _parent_death_signal(signum: int) -> bool:
    """Linux: have the kernel send ``signum`` when the parent dies. False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, signum: int) -> None:
    stop = threading.Event()
    while not stop.wait(_PARENT_POLL_S):
        if os.getppid() != parent_pid:  # re-parented: the parent is gone
            os.kill(os.getpid(), signum)
            return


def die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> None:
    """Send this process ``signum`` as soon as ``parent_pid`` (its parent) is gone (module doc).

    Call it after installing the handler that makes ``signum`` a clean stop. If the parent is
    already gone (it died before this call), the signal is sent at once.
    """
    _parent_death_signal(signum)
    threading.Thread(target=_watch_parent, args=(parent_pid, signum), name="parent watch", daemon=True).start()
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signum)
