"""The prefetching thread yields its iterator's items in order, raises the producer's error
at the item where it happened, and stops its producer when the consumer walks away."""

import threading
import time

import pytest

from unif2ace.train.prefetch import prefetch, prefetching


def test_items_come_in_order_and_the_factory_keeps_its_arguments():
    assert list(prefetch(iter(range(100)), 3)) == list(range(100))
    f = prefetching(lambda epoch, start: range(start, start + 5 + epoch), 2)
    assert list(f(2, 10)) == list(range(10, 17))
    with pytest.raises(ValueError):
        prefetching(lambda e, s: [], 0)


def test_a_producer_error_is_raised_after_the_items_before_it():
    def gen():
        yield 1
        yield 2
        raise KeyError("record 7 has no codes")

    got = []
    with pytest.raises(KeyError, match="record 7"):
        for x in prefetch(gen(), 4):
            got.append(x)
    assert got == [1, 2]


def test_an_abandoned_iterator_stops_its_producer():
    made = []

    def gen():
        for i in range(10_000):
            made.append(i)
            yield i

    it = prefetch(gen(), 2)
    assert next(it) == 0
    it.close()  # the loop rolled over to a new epoch
    time.sleep(0.5)
    n = len(made)
    time.sleep(0.3)
    assert len(made) == n <= 5  # depth 2 + the one in hand + the one being put
    assert not [t for t in threading.enumerate() if t.name == "unif2ace-prefetch"]
