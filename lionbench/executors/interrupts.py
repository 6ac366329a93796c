"""SIGINT and SIGTERM in a process that holds runs: the first gives the runs back, the second
ends the process at once.

Why: Slurm, systemd, Kubernetes and ``kill`` stop a process with SIGTERM, whose default action
ends it on the spot and leaves its run ``running`` until some later process notices the dead
worker. Under :func:`interrupt_guard` SIGTERM acts like Ctrl-C: ``KeyboardInterrupt`` is raised
in the main thread, and the code that holds a run puts it back to pending on the way out.

Three details make that reliable:

- Python raises ``KeyboardInterrupt`` wherever the main thread happens to be, which may be a
  finaliser (``__del__``, a weakref callback) that swallows it. The signal is also recorded,
  and loops that hold runs call :func:`raise_if_interrupted`, so a swallowed interrupt is
  raised again at the next check instead of being lost.
- A Python signal handler runs only between bytecodes: inside a long torch operation a second
  Ctrl-C would wait for it. A watchdog thread reads the signal numbers that the C-level handler
  writes to a wakeup socket (``signal.set_wakeup_fd``) and, on the second signal, runs the
  registered hard-exit hooks (the local executor kills its workers) and calls ``os._exit``
  at once. Runs left ``running`` then are taken back by the next ``lionbench run`` (their
  worker's pid is gone).
- Handlers are installed only in the main thread and restored on exit, so library callers and
  tests see the process as they left it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    active = False  # a guard is installed (guards nest: the outer one does the work)
    count = 0  # signals received under the current guard
    signum: int | None = None  # the last one
    hooks: list[Callable[[], None]] = []


_state = _State()


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a guarded signal arrived (one a finaliser may have eaten)."""
    if _state.count:
        raise KeyboardInterrupt


def last_signal() -> int | None:
    """The signal that interrupted the last guarded block (SIGINT or SIGTERM), if any."""
    return _state.signum


def exit_code(default: int = 130) -> int:
    """The shell's code for the interrupting signal: 128 + its number (130 SIGINT, 143 TERM)."""
    return 128 + _state.signum if _state.signum else default


@contextlib.contextmanager
def on_hard_exit(hook: Callable[[], None]) -> Iterator[None]:
    """Run ``hook`` (quick, never blocking) if a second signal ends the process meanwhile."""
    _state.hooks.append(hook)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            _state.hooks.remove(hook)


def hard_exit(signum: int) -> None:
    """End the process now: the hooks, one line on stderr, ``os._exit(128 + signum)``."""
    for hook in list(_state.hooks):
        with contextlib.suppress(Exception):
            hook()
    with contextlib.suppress(OSError):
        os.write(2, f"\n{signal.Signals(signum).name} again: stopped at once; runs left "
                    "running go back to pending at the next `lionbench run`\n".encode())
    os._exit(128 + signum)


@contextlib.contextmanager
def interrupt_guard() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt (once); the second one exits at once.
    Outside the main thread (where Python allows no handlers) this does nothing."""
    if _state.active or threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.active, _state.count, _state.signum = True, 0, None
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}

    def handler(signum: int, frame: FrameType | None) -> None:
        _state.count += 1
        _state.signum = signum
        if _state.count == 1:
            raise KeyboardInterrupt
        hard_exit(signum)

    def watchdog() -> None:  # sees each signal as it arrives, even during a long C call
        seen = 0
        while True:
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in SIGNALS:
                    seen += 1
                    if seen >= 2:
                        hard_exit(signum)

    old_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    thread = threading.Thread(target=watchdog, name="lionbench-interrupts", daemon=True)
    thread.start()
    for sig in SIGNALS:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        _state.active = False
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(old_fd)
        writer.close()  # the watchdog's recv returns b"" and it ends
        thread.join(timeout=5)
        reader.close()


__all__ = ["exit_code", "hard_exit", "interrupt_guard", "last_signal", "on_hard_exit",
           "raise_if_interrupted"]
