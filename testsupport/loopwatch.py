"""Watch an event loop for blocking: asyncio's own slow-callback log, and whose code it was.

asyncio's debug mode logs every callback or task step that holds the loop longer than
``loop.slow_callback_duration`` ("Executing <Task ...> took 0.123 seconds"), but names only the
task's outermost coroutine, not the code that ran. :class:`LoopWatch` counts those records and
attributes each: a thread of its own samples the loop thread's stack and CPU clock every 5 ms,
and a slow callback is the app's if at least half the samples taken while it ran found
``django_cloudsync`` code executing AND the loop thread was either on CPU for most of it or, for
most of the samples, blocked in a socket call (sync I/O in the loop). A loop thread that is off
CPU and not in a socket call was waiting for the GIL (other threads running) or for a core (a
loaded machine): its frames stand still wherever it was, so they say nothing of whose code held
the loop, and the callback is counted elsewhere (``slow_off_cpu``). The code attributed is the
innermost frame that is not a library's (the stdlib and what the app calls, such as httpx2 or
cryptography, count as the caller's; Django, asgiref, uvicorn and the site's own code count
as theirs, so the middleware's ``await get_response()`` on the stack does not make Django's work
the app's). A slow callback that the garbage collector took at least half of (a full collection
of a large heap stops every thread wherever it falls, and the watcher cannot sample meanwhile)
is the collector's, whatever code was running: the watch times each collection (``gc.callbacks``;
one in any thread holds the GIL, so the loop too) and counts these apart (``slow_in_collector``).
It also samples the process's thread count, for the "no thread per call" figures.

Shared by ``tests/test_async_counts.py`` and the async benchmark's ASGI worker
(``benchmarks/asgi.py``); it yields counts, and nothing asserts a time from it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

import django_cloudsync

#: The threshold of the issue: a step that holds the loop 50 ms or more is a slow callback.
SLOW_CALLBACK_SECONDS = 0.05
#: How often the watcher thread looks (and the loop ticks): a tenth of the threshold.
POLL_SECONDS = 0.005
#: Samples kept: two seconds' worth, longer than any slow callback the storm could log.
SAMPLES_KEPT = 400
APP_DIRECTORY = str(Path(django_cloudsync.__file__).resolve().parent) + "/"
#: Code whose frames answer for the work done below them: the frameworks around the app, and the
#: repository's own sites (benchmarks/, tests/, the example). Anything else is a library.
_FRAMEWORK_PACKAGES = ("django", "asgiref", "uvicorn", "allauth", "rest_framework", "ninja")
_REPOSITORY = str(Path(__file__).resolve().parent.parent) + "/"


def os_thread_count() -> int:
    """This process's threads as the kernel counts them (``/proc/self/status``), native ones included."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return threading.active_count()


@dataclass
class LoopReport:
    #: Records asyncio's debug mode logged ("Executing ... took N seconds").
    slow_callbacks: int = 0
    #: Of those, the ones during which a sample found the loop thread running the app's code ...
    slow_in_app: int = 0
    #: ... and the others.
    slow_elsewhere: int = 0
    #: Of slow_elsewhere, those with the app's frames on the stack but the loop thread off CPU
    #: and not in a socket call for most of them: waiting for the GIL or a core, not blocking.
    slow_off_cpu: int = 0
    #: Of slow_elsewhere, those the garbage collector took at least half of (in any thread).
    slow_in_collector: int = 0
    #: The longest collection, in seconds.
    longest_collection: float = 0.0
    #: The first few slow-callback messages, cut short: which task (never a token: reprs only).
    examples: list[str] = field(default_factory=list)
    #: Where the app's slow callbacks were, as ``file:line`` of the app's frame.
    app_frames: list[str] = field(default_factory=list)
    #: The app's slow callbacks (at most the first 100): (seconds, ``file:line``).
    app_callbacks: list[tuple[float, str]] = field(default_factory=list)
    peak_threads: int = 0


class _SlowCallbackCounter(logging.Handler):
    """Counts asyncio's slow-callback records, and asks the watch whose code each one was."""

    def __init__(self, watch: LoopWatch) -> None:
        super().__init__(logging.WARNING)
        self.watch = watch

    def emit(self, record: logging.LogRecord) -> None:
        if not (isinstance(record.msg, str) and record.msg.startswith("Executing")):
            return
        # Emitted in the loop thread as soon as the slow callback returned: it ran just before.
        ended = time.monotonic()
        took = record.args[-1] if isinstance(record.args, tuple) and record.args else 0.0
        seconds = float(took) if isinstance(took, (int, float)) else 0.0
        report = self.watch.report
        report.slow_callbacks += 1
        if len(report.examples) < 3:
            report.examples.append(record.getMessage()[:300])
        if 2 * self.watch.collector_seconds_during(ended - seconds, ended) >= seconds:
            report.slow_elsewhere += 1
            report.slow_in_collector += 1
            return
        app_frame, on_cpu = self.watch.app_frame_during(ended - seconds, ended)
        if app_frame is None or not on_cpu:
            report.slow_elsewhere += 1
            report.slow_off_cpu += app_frame is not None
        else:
            report.slow_in_app += 1
            if len(report.app_callbacks) < 100:
                report.app_callbacks.append((seconds, app_frame))
            if app_frame not in report.app_frames and len(report.app_frames) < 8:
                report.app_frames.append(app_frame)


class LoopWatch:
    """Put the running loop in debug mode with a 50 ms threshold and watch it until :meth:`stop`.

    Start it from inside the loop (``LoopWatch().start()`` in a coroutine, or as an async context
    manager). ``reset()`` zeroes the counts and the thread peak, to measure one phase. With
    ``debug=False`` it only samples the thread count, and leaves the loop as it is.
    """

    def __init__(
        self,
        threshold: float = SLOW_CALLBACK_SECONDS,
        *,
        debug: bool = True,
        thread_count: Callable[[], int] = os_thread_count,
    ) -> None:
        self.threshold = threshold
        self.debug = debug
        #: What the peak is taken of: a test leaves out the threads of an in-process fake server.
        self.thread_count = thread_count
        self.report = LoopReport()
        self._handler = _SlowCallbackCounter(self)
        #: (monotonic time, the loop thread's CPU time, the app's frame it was executing or None,
        #: whether its innermost frame was a socket call), newest last.
        self._samples: deque[tuple[float, float, str | None, bool]] = deque(maxlen=SAMPLES_KEPT)
        self._cpu_clock: int | None = None
        self._samples_lock = threading.Lock()
        #: (start, end) in monotonic time of each garbage collection in the process, newest last.
        self._collections: deque[tuple[float, float]] = deque(maxlen=SAMPLES_KEPT)
        self._collection_started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id = 0

    def start(self) -> LoopWatch:
        loop = self._loop = asyncio.get_running_loop()
        self._loop_thread_id = threading.get_ident()
        # The loop thread's own CPU clock, readable from the watcher thread (Linux, macOS).
        get_clock = getattr(time, "pthread_getcpuclockid", None)
        self._cpu_clock = get_clock(self._loop_thread_id) if get_clock is not None else None
        if self.debug:
            loop.set_debug(True)
            loop.slow_callback_duration = self.threshold
            logging.getLogger("asyncio").addHandler(self._handler)
            gc.callbacks.append(self._time_collection)
        self.report.peak_threads = self.thread_count()
        self._thread = threading.Thread(target=self._watch, name="loopwatch", daemon=True)
        self._thread.start()
        return self

    def reset(self) -> None:
        self.report.slow_callbacks = self.report.slow_in_app = self.report.slow_elsewhere = 0
        self.report.slow_off_cpu = self.report.slow_in_collector = 0
        self.report.longest_collection = 0.0
        self.report.examples.clear()
        self.report.app_frames.clear()
        self.report.app_callbacks.clear()
        self.report.peak_threads = self.thread_count()

    def stop(self) -> LoopReport:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        logging.getLogger("asyncio").removeHandler(self._handler)
        if self._time_collection in gc.callbacks:
            gc.callbacks.remove(self._time_collection)
        return self.report

    async def __aenter__(self) -> LoopWatch:
        return self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def app_frame_during(self, start: float, end: float) -> tuple[str | None, bool]:
        """The app's frame if the app's code was running in at least half the samples of
        ``[start, end]`` (else None), and whether the loop thread was blocking rather than waiting.

        Half, not one: a loop thread that waits for the GIL (other threads of the process) or for
        a CPU (a loaded machine) stands still wherever it was, and one sample there says nothing.
        Blocking is on CPU for more than half the span (its CPU clock, read by the watcher), or
        in a socket call in most samples: sync I/O sleeps in the kernel, off CPU, yet holds the loop.
        """
        with self._samples_lock:
            during = [sample for sample in self._samples if start <= sample[0] <= end]
        in_app = [sample[2] for sample in during if sample[2] is not None]
        if not in_app or 2 * len(in_app) < len(during):
            return None, False
        if self._cpu_clock is None or len(during) < 2:
            return in_app[0], True  # no clock to tell: the frames alone, as before
        wall = during[-1][0] - during[0][0]
        cpu = during[-1][1] - during[0][1]
        in_socket = sum(1 for sample in during if sample[3])
        return in_app[0], 2 * cpu > wall or 2 * in_socket > len(during)

    def collector_seconds_during(self, start: float, end: float) -> float:
        """How long garbage collections (in any thread: they hold the GIL) ran within ``[start, end]``."""
        return sum(
            max(0.0, min(end, stopped) - max(start, started)) for started, stopped in list(self._collections)
        )

    def _time_collection(self, phase: str, info: dict[str, int]) -> None:
        # Called by the collector in whichever thread triggered it: it holds the GIL throughout,
        # so a collection in any thread of the process holds the loop thread too.
        now = time.monotonic()
        if phase == "start":
            self._collection_started = now
            return
        self._collections.append((self._collection_started, now))
        self.report.longest_collection = max(self.report.longest_collection, now - self._collection_started)

    def _watch(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.report.peak_threads = max(self.report.peak_threads, self.thread_count())
            if not self.debug:
                continue
            frame = sys._current_frames().get(self._loop_thread_id)
            cpu = time.clock_gettime(self._cpu_clock) if self._cpu_clock is not None else 0.0
            sample = (time.monotonic(), cpu, _running_app_frame(frame), _in_socket_call(frame))
            with self._samples_lock:
                self._samples.append(sample)


def _running_app_frame(frame: FrameType | None) -> str | None:
    """``file:line`` if the innermost frame that is not a library's is the app's, else ``None``."""
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(APP_DIRECTORY):
            return f"{filename[len(APP_DIRECTORY) :]}:{frame.f_lineno}"
        if _is_framework(filename):
            return None
        frame = frame.f_back
    return None


#: Where a sync socket call's innermost Python frame stands while the C call blocks in the kernel:
#: the stdlib's wrappers, and the sync backends of httpcore2 and urllib3 (sock.recv, sock.sendall).
_SOCKET_FILES = (
    "/socket.py",
    "/ssl.py",
    "/selectors.py",
    "/httpcore2/_backends/sync.py",
    "/urllib3/util/wait.py",
)


def _in_socket_call(frame: FrameType | None) -> bool:
    return frame is not None and frame.f_code.co_filename.endswith(_SOCKET_FILES)


def _is_framework(filename: str) -> bool:
    parts = filename.split("/site-packages/", 1)
    if len(parts) == 2:  # an installed package (a venv may live inside the repository)
        return parts[1].split("/", 1)[0] in _FRAMEWORK_PACKAGES
    return filename.startswith(_REPOSITORY)
