"""The optimizer's incremental trial table: the same arrays as a pass over every trial would build."""

from __future__ import annotations

import numpy as np

from kubetune import Optimizer
from kubetune.core.engine.trials import Rows, TrialTable


def test_rows_grow_and_keep_their_order():
    rows = Rows(2)
    for i in range(40):
        assert rows.append(np.array([i, -i])) == i
    rows.keep(np.arange(40) % 3 == 0)
    assert rows.view[:, 0].tolist() == list(range(0, 40, 3))
    assert Rows.of(np.ones((3, 2))).view.shape == (3, 2)


def test_the_table_follows_asks_tells_and_failures():
    table = TrialTable(2)
    for i in range(6):
        table.add_pending(str(i), i + 1, np.array([i, i / 10]), (i,))
    table.complete("3", 0.3)
    table.fail("1")
    table.complete("0", 0.0)
    assert (table.n_completed, table.n_pending, table.n_failed) == (2, 3, 1)
    assert table.pending_ids == ["2", "4", "5"] and table.pending_keys == [(2,), (4,), (5,)]
    np.testing.assert_array_equal(table.pending_x[:, 0], [2, 4, 5])
    np.testing.assert_array_equal(table.pending_sequence, [3, 5, 6])
    # completed in the order they reported, and in the order they were first seen on request
    np.testing.assert_array_equal(table.losses, [0.3, 0.0])
    X, losses, keys = table.completed_in_order()
    np.testing.assert_array_equal(losses, [0.0, 0.3])
    assert keys == [(0,), (3,)] and X[:, 0].tolist() == [0, 3]
    table.add_pending("6", 7, np.array([6, 0.6]), (6,))
    table.complete("5", 0.5)
    assert table.pending_ids == ["2", "4", "6"]


def test_the_history_a_strategy_sees_matches_the_trials():
    opt = Optimizer([{"name": "x", "type": "double", "min": 0, "max": 1}], algorithm="random", seed=0)
    batch = opt.ask(8)
    for s in reversed(batch[:5]):  # reported in reverse order
        opt.tell(s.id, s.params["x"])
    opt.fail(batch[5].id)
    history = opt._history()
    assert (history.n_completed, history.n_pending, history.n_failed) == (5, 2, 1)
    np.testing.assert_allclose(history.completed_x[:, 0], [s.params["x"] for s in batch[:5]])
    np.testing.assert_allclose(history.losses, [s.params["x"] for s in batch[:5]])
    np.testing.assert_allclose(history.pending_x[:, 0], [s.params["x"] for s in batch[6:]])
    assert opt.pending == [batch[6].id, batch[7].id]
    assert opt.best == (batch[int(np.argmin([s.params["x"] for s in batch[:5]]))].params,
                        min(s.params["x"] for s in batch[:5]))
