"""Build the next micro-batches in a background thread while the model computes.

On a GPU the step can be shorter than building its batch on the host (the small preset at
batch 128: ~95 ms of PNG decoding, tokenising and collating per step on one core), so the
loop waits for data. ``train.prefetch = N`` keeps up to N batches ready.

Order and contents are unchanged: one producer thread reads the factory's iterator in
order. The factory must take its randomness from explicit generators (as
:class:`~unif2ace.train.task.MixedTaskData` does), never from the global RNG, whose state
the main thread's steps move at the same time; with that, a run gives the same batches, the
same losses and the same exact resume with or without prefetching.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_END = object()


class _Raised:
    def __init__(self, err: BaseException):
        self.err = err


def prefetching(factory: Callable[[int, int], Iterable[Any]], depth: int):
    """``factory`` (``(epoch, start) -> batches``) whose batches come from a thread
    that stays up to ``depth`` batches ahead."""
    if depth < 1:
        raise ValueError(f"prefetch depth must be >= 1, got {depth}")
    return lambda epoch, start: prefetch(iter(factory(epoch, start)), depth)


def prefetch(it: Iterator[Any], depth: int) -> Iterator[Any]:
    """The items of ``it``, in order, produced by a daemon thread ``depth`` items ahead;
    an exception in the producer is raised here, at the item where it happened."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for x in it:
                if not put(x):
                    return
            put(_END)
        except BaseException as err:  # handed to the consumer, raised there
            put(_Raised(err))

    producer = threading.Thread(target=work, name="unif2ace-prefetch", daemon=True)
    producer.start()
    try:
        while True:
            x = q.get()
            if x is _END:
                return
            if isinstance(x, _Raised):
                raise x.err
            yield x
    finally:
        stop.set()  # an abandoned epoch lets its producer finish
        producer.join(timeout=5.0)  # at most the batch it is building
