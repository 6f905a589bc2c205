"""The unit-cube encoding: bijective on valid assignments, every point decodes to a valid one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetune.core.space import Space


@st.composite
def parameters(draw):
    kind = draw(st.sampled_from(["double", "int", "discrete", "categorical"]))
    log = draw(st.booleans())
    if kind == "double":
        lo = draw(st.floats(1e-3, 1e3) if log else st.floats(-1e3, 1e3))
        hi = lo + draw(st.floats(1e-3, 1e3))
        return {"type": kind, "min": lo, "max": hi, "scale": "log" if log else "linear"}
    if kind == "int":
        lo = draw(st.integers(1, 100) if log else st.integers(-100, 100))
        hi = lo + draw(st.integers(1, 200))
        return {"type": kind, "min": lo, "max": hi, "scale": "log" if log else "linear"}
    if kind == "discrete":
        values = draw(st.lists(st.floats(-1e3, 1e3, allow_nan=False) | st.integers(-1000, 1000),
                               min_size=1, max_size=6, unique_by=float))
        return {"type": kind, "values": values}
    values = draw(st.lists(st.text(min_size=1, max_size=4) | st.integers(-(2**63) + 1, 2**63 - 1) | st.booleans(),
                           min_size=1, max_size=6,
                           unique_by=lambda v: (type(v) is bool, type(v) is str, v)))
    return {"type": kind, "values": values}


@st.composite
def spaces(draw):
    specs = draw(st.lists(parameters(), min_size=1, max_size=5))
    return Space([{"name": f"p{i}", **spec} for i, spec in enumerate(specs)])


@st.composite
def space_and_assignment(draw):
    space = draw(spaces())
    params = {}
    for d in space.dimensions:
        p = d.parameter
        if p.type == "double":
            params[d.name] = draw(st.floats(p.min, p.max))
        elif p.type == "int":
            params[d.name] = draw(st.integers(int(p.min), int(p.max)))
        else:
            params[d.name] = draw(st.sampled_from(p.values))
    return space, params


@settings(max_examples=300)
@given(space_and_assignment())
def test_decode_inverts_encode(case):
    space, params = case
    u = space.encode(params)
    assert u.shape == (space.n_columns,)
    assert np.all((u >= 0) & (u <= 1))
    decoded = space.decode(u)
    for d in space.dimensions:
        if d.parameter.type == "double":
            assert math.isclose(decoded[d.name], params[d.name], rel_tol=1e-9, abs_tol=1e-9)
        else:
            assert decoded[d.name] == params[d.name] and type(decoded[d.name]) is type(params[d.name])


@settings(max_examples=200)
@given(spaces(), st.integers(0, 2**32 - 1))
def test_every_point_of_the_cube_decodes_to_a_valid_assignment(space, seed):
    points = np.random.default_rng(seed).random((16, space.n_columns))
    points[0] = 0.0
    points[1] = 1.0
    for params in space.decode_many(points):
        assert space.validate(params) == params


@settings(max_examples=200)
@given(spaces(), st.integers(0, 2**32 - 1))
def test_snap_is_idempotent(space, seed):
    points = np.random.default_rng(seed).random((8, space.n_columns))
    snapped = space.snap(points)
    np.testing.assert_allclose(space.snap(snapped), snapped, atol=1e-12)


def test_ints_own_equal_slices_and_round_consistently():
    space = Space([{"name": "n", "type": "int", "min": 1, "max": 4}])
    us = np.linspace(0, 1, 4001).reshape(-1, 1)
    counts = np.bincount([p["n"] for p in space.decode_many(us)], minlength=5)[1:]
    assert counts.min() > 950  # about a quarter of the axis each
    assert [space.encode({"n": n})[0] for n in (1, 4)] == [0.125, 0.875]


def test_log_scale_spreads_draws_over_orders_of_magnitude():
    space = Space([{"name": "lr", "type": "double", "min": 1e-5, "max": 1e-1, "scale": "log"}])
    draws = [p["lr"] for p in space.decode_many(np.random.default_rng(0).random((4000, 1)))]
    below = sum(v < 1e-3 for v in draws) / len(draws)
    assert 0.45 < below < 0.55


def test_categorical_is_one_hot():
    space = Space([{"name": "k", "type": "categorical", "values": ["rbf", "linear", "poly"]}])
    assert space.encode({"k": "linear"}).tolist() == [0.0, 1.0, 0.0]
    assert space.decode(np.array([0.2, 0.1, 0.9])) == {"k": "poly"}


def test_validate_names_what_is_wrong():
    space = Space([{"name": "n", "type": "int", "min": 1, "max": 4}])
    with pytest.raises(ValueError, match="outside"):
        space.validate({"n": 9})
    with pytest.raises(ValueError, match="missing"):
        space.validate({})


def test_grid_enumeration():
    space = Space([
        {"name": "x", "type": "double", "min": 0, "max": 1, "steps": 3},
        {"name": "lr", "type": "double", "min": 1e-3, "max": 1e-1, "scale": "log"},
        {"name": "k", "type": "categorical", "values": ["a", "b"]},
    ])
    points = list(space.grid(default_steps=3))
    assert len(points) == space.grid_size(3) == 18
    assert sorted({p["x"] for p in points}) == [0.0, 0.5, 1.0]
    assert [round(v, 6) for v in sorted({p["lr"] for p in points})] == [0.001, 0.01, 0.1]
    with pytest.raises(ValueError, match="steps"):
        list(space.grid())


def round_trip_tolerance(space) -> np.ndarray:
    """Per column, what decoding and encoding again may lose to rounding: a double column maps [0, 1] to
    [a, b] (logarithms for a log scale) and back, which loses about eps * max(|a|, |b|) / (b - a); a narrow
    range far from zero (min 1000, max 1000.001 on a log scale) loses 1e-9."""
    tolerance = np.full(space.n_columns, 1e-12)
    for d in space.dimensions:
        p = d.parameter
        if p.type == "double":
            a, b = (math.log(p.min), math.log(p.max)) if p.scale == "log" else (p.min, p.max)
            tolerance[d.start] += 16 * np.finfo(float).eps * max(abs(a), abs(b)) / (b - a)
    return tolerance


@settings(max_examples=200)
@given(spaces(), st.integers(0, 2**32 - 1))
def test_vectorised_snap_and_keys_agree_with_decoding(space, seed):
    points = np.random.default_rng(seed).random((12, space.n_columns))
    decoded = space.decode_many(points)
    difference = np.abs(space.snap(points) - space.encode_many(decoded))
    assert np.all(difference <= round_trip_tolerance(space)[None, :])
    assert space.keys_of_points(points) == [space.key(p) for p in decoded]


def test_int_ranges_cost_the_same_however_wide():
    space = Space([{"name": "n", "type": "int", "min": 0, "max": 10**18},
                   {"name": "m", "type": "int", "min": -(2**63) + 1, "max": 2**63 - 1}])
    assert space.size() == (10**18 + 1) * (2**64 - 1)
    assert space.grid_size() == space.size()
    assert next(space.grid()) == {"n": 0, "m": -(2**63) + 1}
    edges = space.decode_many(np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]]))
    assert edges[:2] == [{"n": 0, "m": -(2**63) + 1}, {"n": 10**18, "m": 2**63 - 1}]
    assert all(space.validate(p) == p for p in edges)
    assert space.key({"n": 10**18, "m": 5}) == (10**18, 5)
    assert space.decode(space.encode({"n": 123456789, "m": 0}))["n"] == 123456789


def test_int_parameters_keep_exact_64_bit_bounds():
    from kubetune.core.spec import ExperimentSpec

    bounds = {"name": "n", "type": "int", "min": 999999999999999999, "max": "1e18"}
    parameter = ExperimentSpec.model_validate({
        "objective": {"metric": "loss", "direction": "minimize"}, "parameters": [bounds],
        "trialTemplate": {"spec": {"containers": [{"name": "t"}]}},
    }).parameters[0]
    assert (parameter.min, parameter.max) == (999999999999999999, 10**18)
