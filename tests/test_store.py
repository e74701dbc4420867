import sqlite3

import pytest

from edgenas.run.store import Store


def _trial(key, reward, params, status="ok"):
    return dict(
        arch_key=key,
        actions=[1, 2],
        arch={"layers": []},
        status=status,
        params=params,
        reward=reward,
        reward_terms={"total": reward},
        seed=1,
        total_seconds=0.5,
        latency={"median_ms": 0.1},
        origin_update=0,
        origin_position=0,
    )


def test_trials_persist_in_a_real_sqlite_file(tmp_path):
    path = tmp_path / "search.db"
    with Store(path) as store:
        a = store.add_trial(**_trial("a", 0.9, 500))
        store.add_trial(**_trial("b", 0.95, 800))
        store.add_trial(**_trial("c", 0.95, 300))
        store.add_trial(**_trial("d", 0.0, 10**6, status="rejected"))
        store.add_sample(0, 0, [1, 2], "a", a, 0.9, reused=False)
        store.add_update(0, {"loss": 1.0, "entropy": 2.0, "baseline": 0.5, "mean_reward": 0.7})
        store.set_meta("pipeline", {"x": 1})
    # a separate connection (another process would do the same) sees everything committed
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 4
    conn.close()
    with Store(path) as store:
        assert [t.arch_key for t in store.top(3)] == ["c", "b", "a"]  # reward, then fewer params
        assert store.status_counts() == {"ok": 3, "rejected": 1, "failed": 0, "stopped": 0}
        t = store.trial_by_key("a")
        assert t.actions == [1, 2] and t.latency == {"median_ms": 0.1}
        assert store.get_meta("pipeline") == {"x": 1}
        assert store.sample_count() == 1 and len(store.updates()) == 1


def test_same_architecture_cannot_be_stored_twice(tmp_path):
    with Store(tmp_path / "s.db") as store:
        store.add_trial(**_trial("a", 0.9, 5))
        with pytest.raises(sqlite3.IntegrityError):
            store.add_trial(**_trial("a", 0.8, 5))
        with pytest.raises(KeyError):
            store.add_trial(**_trial("b", 0.8, 5), nonsense=1)


def test_a_version_4_store_gains_update_stats(tmp_path):
    """Databases written before controller statistics were kept whole open, migrate, and read
    their old updates with empty stats; new updates keep everything the controller reported."""
    import sqlite3

    from edgenas.run.store import SCHEMA, Store

    db = tmp_path / "search.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(SCHEMA.replace(",\n    stats TEXT", "").replace(",\n    told REAL", ""))
        conn.execute("INSERT INTO updates(update_index, loss, finished_at) VALUES (0, 0.5, 1.0)")
        conn.execute("PRAGMA user_version = 4")
    with Store(db, readonly=True) as ro:
        assert [(u["loss"], u["stats"]) for u in ro.updates()] == [(0.5, {})]
    with Store(db) as rw:
        rw.add_update(1, {"loss": 0.25, "surrogate_spearman": 0.75, "candidates": 12.0})
        assert [u["stats"] for u in rw.updates()] == [
            {},
            {"loss": 0.25, "surrogate_spearman": 0.75, "candidates": 12.0},
        ]
        assert rw.conn.execute("PRAGMA user_version").fetchone()[0] == 6


def test_a_version_5_store_gains_what_the_controller_was_told(tmp_path):
    """Samples written before the told reward was kept read back with their reward as what was
    told; a new update's told rewards (the scalarisation under --objectives) are kept; a sample
    asked again at its (update, position) replaces the one there."""
    import sqlite3

    from edgenas.run.store import SCHEMA, Store

    db = tmp_path / "search.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(SCHEMA.replace(",\n    told REAL", ""))
        conn.execute("PRAGMA user_version = 5")
    with Store(db) as store:
        trial_id = store.add_trial(**_trial("a", 0.5, 5))
        store.conn.execute(
            "INSERT INTO samples(update_index, position, actions, arch_key, trial_id, reward, reused) "
            "VALUES (0, 0, '[1, 2]', 'a', ?, 0.5, 0)",
            (trial_id,),
        )
        assert [(r["actions"], r["told"]) for r in store.told(1)] == [("[1, 2]", 0.5)]
        store.add_sample(1, 0, [3], "a", trial_id, 0.5, True)
        store.add_sample(1, 1, [4], "a", trial_id, 0.5, True)
        store.set_told(1, [0.25, 0.75])
        assert [r["told"] for r in store.told(2)] == [0.5, 0.25, 0.75]
        assert store.told(1)[-1]["update_index"] == 0  # only the updates before the one asked for
        store.add_sample(1, 1, [4], "a", trial_id, 0.5, True)  # asked again after a crash
        assert store.sample_count() == 3 and store.sample_count(before_update=1) == 1
