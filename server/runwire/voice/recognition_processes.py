"""Speech recognition in worker processes, shared by a process's calls.

PocketSphinx holds the GIL while it decodes: measured, up to 0.3 s at a time, and an event loop
beside 10 concurrent recognitions in threads got 55 turns in 8 s. In a server that starved
everything else on the loop; with 10 calls listening at once its runner could not renew its
leases for 4 s and gave every call up (bench/calls.py). Decoding in processes of their own, the
server's loop competes with them for CPU only, which the operating system shares.

Workers are spawned (never forked from a server with threads running), load the model on
their first recognition (about 0.5 s), and exit with the process that started them, even when
it is killed.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from runwire.nondumpable import keep_memory_private
from runwire.voice.asr import Recognition, Recognizer

_ORPHAN_CHECK_SECONDS = 1.0


class RecognitionProcesses:
    """Recognises 8 kHz PCM in up to `workers` processes; blocking and thread-safe, like
    `Recognizer`, whose results it returns."""

    def __init__(self, workers: int | None = None) -> None:
        self._workers = workers or os.cpu_count() or 1
        self._lock = threading.Lock()
        self._executor = self._started()
        try:
            # Fail now, with the engine's own error (EngineMissing), if PocketSphinx is missing
            # or its model is broken, rather than on a call's first listen.
            self._executor.submit(_loaded).result()
        except BaseException:
            self.close()
            raise

    def _started(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(os.getpid(),),
        )

    def recognize(self, pcm: bytes, phrases: Sequence[str] = ()) -> Recognition:
        """What `pcm` says: free-form, or which of `phrases` it holds (see `Recognizer`)."""
        executor, spoken = self._executor, tuple(phrases)
        try:
            return executor.submit(_recognize, pcm, spoken).result()
        except BrokenProcessPool:
            # A worker died (killed, out of memory): every pending recognition fails with it.
            # Start new workers, once, for this and the following recognitions.
            with self._lock:
                if self._executor is executor:
                    self._executor = self._started()
                executor = self._executor
            return executor.submit(_recognize, pcm, spoken).result()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


@functools.cache
def default_recognizer() -> RecognitionProcesses:
    """The process's shared recognizer (its workers end at exit, with the interpreter)."""
    return RecognitionProcesses()


def _start_worker(parent: int) -> None:
    # Spawned with the server's environment (the database URL): no step may read it here.
    keep_memory_private()
    # A server killed with SIGKILL cannot stop its workers, and they would wait for work
    # forever (each holds the task queue's write end too, so it never reads an end of file).
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


@functools.cache
def _worker_recognizer() -> Recognizer:
    # Loaded by the first task, not by the initializer: an initializer's exception breaks the
    # pool without saying why, a task's reaches the caller.
    return Recognizer(max_workers=1)


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_ORPHAN_CHECK_SECONDS)
    os._exit(0)


def _loaded() -> None:
    _worker_recognizer()


def _recognize(pcm: bytes, phrases: tuple[str, ...]) -> Recognition:
    return _worker_recognizer().recognize(pcm, phrases)
