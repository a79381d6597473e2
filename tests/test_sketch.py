"""The latency Sketch (core/sketch.py): every quantile within its stated relative error of the
exact one, merging equals sketching the union, and the stored form reads back the same."""

from __future__ import annotations

import math

import bson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mjq_notebook.core.sketch import RELATIVE_ERROR, ZERO_S, Sketch

# durations from just over the zero bucket to about a month, and some in it (and negative)
DURATIONS = st.floats(min_value=ZERO_S * 1.0001, max_value=3e6, allow_nan=False)
ANY = st.one_of(DURATIONS, st.floats(min_value=-5.0, max_value=ZERO_S, allow_nan=False))
QS = [0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0]


def exact(values: list[float], q: float) -> float:
    """The sample at rank floor(q * (n - 1)) (what the sketch approximates)."""
    return sorted(values)[math.floor(q * (len(values) - 1))]


@settings(max_examples=200, deadline=None)
@given(st.lists(ANY, min_size=1, max_size=300), st.sampled_from(QS))
def test_every_quantile_is_within_the_relative_error(values, q):
    got = Sketch.of(values).quantile(q)
    want = exact(values, q)
    if want <= ZERO_S:  # the zero bucket: answered as 0 s
        assert got == 0.0
    else:
        assert abs(got - want) <= RELATIVE_ERROR * want * (1 + 1e-9), (got, want)


@settings(max_examples=100, deadline=None)
@given(st.lists(ANY, max_size=100), st.lists(ANY, max_size=100))
def test_merge_is_the_sketch_of_the_union(a, b):
    merged = Sketch.of(a).merge(Sketch.of(b))
    assert merged == Sketch.of(a + b)
    assert merged.count == len(a) + len(b)
    for q in QS:
        assert merged.quantile(q) == Sketch.of(a + b).quantile(q)


@settings(max_examples=100, deadline=None)
@given(st.lists(ANY, max_size=200))
def test_the_stored_form_reads_back_the_same(values):
    sketch = Sketch.of(values)
    doc = bson.decode(bson.encode({"s": sketch.to_doc()}))["s"]  # as BSON stores it
    back = Sketch.from_doc(doc)
    assert back == sketch
    assert all(isinstance(key, str) for key in doc["b"])
    assert [back.quantile(q) for q in QS] == [sketch.quantile(q) for q in QS]


@settings(max_examples=100, deadline=None)
@given(st.lists(DURATIONS, min_size=1, max_size=200), DURATIONS)
def test_count_at_most_is_exact_away_from_the_bound(values, bound):
    got = Sketch.of(values).count_at_most(bound)
    surely_below = sum(v <= bound / (1 + 2 * RELATIVE_ERROR) for v in values)
    surely_above = sum(v > bound * (1 + 2 * RELATIVE_ERROR) for v in values)
    assert surely_below <= got <= len(values) - surely_above


def test_an_empty_sketch_has_no_quantile_and_small_values_count_as_zero():
    assert Sketch().quantile(0.5) is None
    sketch = Sketch.of([-3.0, 0.0, 0.0005, 2.0])  # clock skew, nothing, under a millisecond
    assert sketch.zeros == 3 and sketch.count == 4
    assert sketch.quantile(0.5) == 0.0
    assert sketch.count_at_most(0.0) == 3 and sketch.count_at_most(10) == 4
    assert sketch.sum == pytest.approx(2.0005)  # negatives add nothing to the sum
    sketch.add(float("nan"))
    assert sketch.count == 4
    with pytest.raises(ValueError):
        sketch.quantile(1.5)
