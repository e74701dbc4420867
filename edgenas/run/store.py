"""The run's SQLite database: the single source of truth of a search.

Tables
  meta     key/value: pipeline, profile, dataset description, versions (JSON text)
  trials   one row per distinct architecture the search evaluated, committed when it finishes:
           status ok / rejected / failed, costs, accuracy, latency, reward and its terms
  samples  one row per controller sample, in order, pointing at the trial that answered it
           (a repeated architecture reuses its trial: `reused` = 1)
  updates  one row per policy update: loss, entropy, baseline, mean reward
WAL mode. A finished trial and the sample that asked for it are committed in one transaction, so
a crash leaves either both or neither.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    arch_key TEXT NOT NULL UNIQUE,
    actions TEXT NOT NULL,
    arch TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'rejected', 'failed', 'stopped')),
    reason TEXT,
    params INTEGER NOT NULL,
    macs INTEGER,
    flops INTEGER,
    val_accuracy REAL,
    latency_median_ms REAL,
    latency_p90_ms REAL,
    latency_runs INTEGER,
    latency_label TEXT,
    latency TEXT,
    reward REAL NOT NULL,
    reward_terms TEXT NOT NULL,
    seed INTEGER NOT NULL,
    train_seconds REAL,
    export_seconds REAL,
    measure_seconds REAL,
    total_seconds REAL NOT NULL,
    onnx_path TEXT,
    weights_path TEXT,
    error TEXT,
    origin_update INTEGER NOT NULL,
    origin_position INTEGER NOT NULL,
    curve TEXT,
    finished_at REAL NOT NULL,
    memory TEXT,
    fp32_val_accuracy REAL,
    rung INTEGER
);
CREATE TABLE IF NOT EXISTS rungs (
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    rung INTEGER NOT NULL,
    epochs INTEGER NOT NULL,
    val_accuracy REAL,
    reward REAL NOT NULL,
    update_index INTEGER NOT NULL,
    state_path TEXT,
    train_seconds REAL,
    finished_at REAL NOT NULL,
    PRIMARY KEY (trial_id, rung)
);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    update_index INTEGER NOT NULL,
    position INTEGER NOT NULL,
    actions TEXT NOT NULL,
    arch_key TEXT NOT NULL,
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    reward REAL NOT NULL,
    reused INTEGER NOT NULL,
    told REAL
);
CREATE INDEX IF NOT EXISTS samples_at ON samples(update_index, position);
CREATE TABLE IF NOT EXISTS updates (
    update_index INTEGER PRIMARY KEY,
    loss REAL, entropy REAL, baseline REAL, mean_reward REAL,
    finished_at REAL NOT NULL,
    stats TEXT
);
"""

TRIAL_COLUMNS = (
    "arch_key",
    "actions",
    "arch",
    "status",
    "reason",
    "params",
    "macs",
    "flops",
    "val_accuracy",
    "latency_median_ms",
    "latency_p90_ms",
    "latency_runs",
    "latency_label",
    "latency",
    "reward",
    "reward_terms",
    "seed",
    "train_seconds",
    "export_seconds",
    "measure_seconds",
    "total_seconds",
    "onnx_path",
    "weights_path",
    "error",
    "origin_update",
    "origin_position",
    "curve",
    "memory",
    "fp32_val_accuracy",
    "rung",
)


@dataclass(frozen=True)
class Trial:
    """A row of `trials`, JSON columns decoded."""

    id: int
    arch_key: str
    actions: list[int]
    arch: dict[str, Any]
    status: str
    reason: str | None
    params: int
    macs: int | None
    flops: int | None
    val_accuracy: float | None
    latency_median_ms: float | None
    latency_p90_ms: float | None
    latency_runs: int | None
    latency_label: str | None
    latency: dict[str, Any] | None
    reward: float
    reward_terms: dict[str, float]
    seed: int
    train_seconds: float | None
    export_seconds: float | None
    measure_seconds: float | None
    total_seconds: float
    onnx_path: str | None
    weights_path: str | None
    error: str | None
    origin_update: int  # the controller update and position that first sampled it
    origin_position: int
    curve: list[float] | None  # validation accuracy per epoch, when early stopping watched it
    finished_at: float
    memory: dict[str, Any] | None = None  # peak RAM / flash estimate (edgenas.hardware.memory), when made
    fp32_val_accuracy: float | None = None  # int8 profiles: val_accuracy is the int8 model's, this the float's
    rung: int | None = None  # multi-fidelity: the highest rung reached (its accuracy and reward are these)

    @property
    def arch_text(self) -> str:
        """The architecture as tables show it: NB201's standard cell string, else the canonical
        key without its space prefix."""
        return self.arch.get("cell") or self.arch_key.split("|", 1)[-1]


_JSON_COLUMNS = ("actions", "arch", "latency", "reward_terms", "curve", "memory")


SCHEMA_VERSION = 6
# 2: before trials.memory / fp32_val_accuracy; 3: before trials.rung and the rungs table; 4: before
# updates.stats; 5: before samples.told. Opened for writing, an older database gains them;
# read-only, it is read as it is.
READABLE_VERSIONS = (2, 3, 4, 5, 6)


@dataclass(frozen=True)
class RungResult:
    """A child's result at one rung of a multi-fidelity search."""

    trial_id: int
    rung: int
    epochs: int
    val_accuracy: float | None
    reward: float
    update_index: int  # the controller update during which it was reached
    state_path: str | None  # training state to continue from (run-relative), None at the last rung
    train_seconds: float | None


class Store:
    """Not shared between threads; open one Store per process."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        """`readonly`: only read (report, bench, export), which also works on a read-only disk."""
        from edgenas.errors import RunDirError

        self.path = Path(path)
        try:
            if readonly:
                self.conn = self._connect_readonly()
            else:
                self.conn = sqlite3.connect(str(self.path), isolation_level=None)  # autocommit; explicit BEGIN
            self.conn.row_factory = sqlite3.Row
            if not readonly:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.execute("PRAGMA foreign_keys=ON")
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            has_tables = self.conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise RunDirError(
                f"{self.path} is not a readable edgenas database ({exc}); it is damaged or not a search.db"
            ) from exc
        if has_tables and version not in READABLE_VERSIONS:
            self.conn.close()
            raise RunDirError(
                f"{self.path} was written by another edgenas version (database schema {version}, this "
                f"version reads {SCHEMA_VERSION}); use the edgenas version that made it"
            )
        if readonly:
            if not has_tables:
                self.conn.close()
                raise RunDirError(f"{self.path} holds no edgenas tables; it was not written by edgenas search")
            self._rungs = version >= 4
            return
        self._rungs = True
        if has_tables and version == 2:
            self.conn.execute("ALTER TABLE trials ADD COLUMN memory TEXT")
            self.conn.execute("ALTER TABLE trials ADD COLUMN fp32_val_accuracy REAL")
        if has_tables and version in (2, 3):
            self.conn.execute("ALTER TABLE trials ADD COLUMN rung INTEGER")
        if has_tables and version in (2, 3, 4):
            self.conn.execute("ALTER TABLE updates ADD COLUMN stats TEXT")
        if has_tables and version in (2, 3, 4, 5):
            self.conn.execute("ALTER TABLE samples ADD COLUMN told REAL")
        self.conn.executescript(SCHEMA)
        self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _connect_readonly(self) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri()
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:  # a WAL database on a read-only disk: no -shm can be made
            conn.close()
            return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- meta -------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    # -- trials -----------------------------------------------------------------------------
    def add_trial(self, **values: Any) -> int:
        """Insert a finished trial (its own transaction); returns its id."""
        return self._insert_trial(values)

    def add_trial_and_sample(
        self, trial: dict[str, Any], actions: list[int], rung: dict[str, Any] | None = None
    ) -> int:
        """Insert a new trial and the sample that produced it (and, multi-fidelity, its first rung's
        result), atomically; returns the trial id."""
        from edgenas import faults

        self.conn.execute("BEGIN IMMEDIATE")
        try:
            trial_id = self._insert_trial(trial)
            if rung is not None:
                self._insert_rung(trial_id, rung)
            faults.point("db-write")
            self.add_sample(
                trial["origin_update"],
                trial["origin_position"],
                actions,
                trial["arch_key"],
                trial_id,
                trial["reward"],
                False,
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return trial_id

    @staticmethod
    def _encoded(values: dict[str, Any]) -> dict[str, Any]:
        """Trial column values as stored: names checked, JSON columns encoded."""
        unknown = set(values) - set(TRIAL_COLUMNS)
        if unknown:
            raise KeyError(f"unknown trial columns {sorted(unknown)}")
        return {k: json.dumps(v) if k in _JSON_COLUMNS and v is not None else v for k, v in values.items()}

    def _insert_trial(self, values: dict[str, Any]) -> int:
        encoded = self._encoded(values)
        row = {k: encoded.get(k) for k in TRIAL_COLUMNS}
        row["finished_at"] = time.time()
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        cur = self.conn.execute(f"INSERT INTO trials ({cols}) VALUES ({marks})", tuple(row.values()))
        return int(cur.lastrowid)

    # -- rungs (multi-fidelity) ---------------------------------------------------------------
    def _insert_rung(self, trial_id: int, values: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO rungs(trial_id, rung, epochs, val_accuracy, reward, update_index, state_path, "
            "train_seconds, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                trial_id,
                values["rung"],
                values["epochs"],
                values.get("val_accuracy"),
                values["reward"],
                values["update_index"],
                values.get("state_path"),
                values.get("train_seconds"),
                time.time(),
            ),
        )

    def promote_trial(self, trial_id: int, trial: dict[str, Any], rung: dict[str, Any]) -> None:
        """A child's result at a higher rung: its trial row takes the new values (accuracy, reward,
        weights, rung) and the rung's row is added, in one transaction."""
        from edgenas import faults

        values = self._encoded(trial)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            sets = ", ".join(f"{k} = ?" for k in values)
            self.conn.execute(
                f"UPDATE trials SET {sets}, finished_at = ? WHERE id = ?", (*values.values(), time.time(), trial_id)
            )
            self._insert_rung(trial_id, rung)
            faults.point("db-write")
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def rung_results(self, before_update: int | None = None) -> list[RungResult]:
        """Every rung result (of updates before `before_update` when given), by trial and rung."""
        if not self._rungs:
            return []
        query = "SELECT * FROM rungs"
        args: tuple[Any, ...] = ()
        if before_update is not None:
            query += " WHERE update_index < ?"
            args = (before_update,)
        rows = self.conn.execute(query + " ORDER BY trial_id, rung", args)
        return [self._rung(r) for r in rows]

    def rung_result(self, trial_id: int, rung: int) -> RungResult | None:
        if not self._rungs:
            return None
        r = self.conn.execute("SELECT * FROM rungs WHERE trial_id = ? AND rung = ?", (trial_id, rung)).fetchone()
        return self._rung(r) if r is not None else None

    @staticmethod
    def _rung(row: sqlite3.Row) -> RungResult:
        data = dict(row)
        data.pop("finished_at")
        return RungResult(**data)

    @staticmethod
    def _trial(row: sqlite3.Row) -> Trial:
        data = dict(row)
        for k in _JSON_COLUMNS:
            if data.get(k) is not None:
                data[k] = json.loads(data[k])
        return Trial(**data)

    def trial(self, trial_id: int) -> Trial | None:
        row = self.conn.execute("SELECT * FROM trials WHERE id = ?", (trial_id,)).fetchone()
        return self._trial(row) if row else None

    def trial_by_key(self, arch_key: str) -> Trial | None:
        row = self.conn.execute("SELECT * FROM trials WHERE arch_key = ?", (arch_key,)).fetchone()
        return self._trial(row) if row else None

    def trials(self, status: str | None = None) -> list[Trial]:
        if status is None:
            rows = self.conn.execute("SELECT * FROM trials ORDER BY id")
        else:
            rows = self.conn.execute("SELECT * FROM trials WHERE status = ? ORDER BY id", (status,))
        return [self._trial(r) for r in rows]

    def top(self, k: int) -> list[Trial]:
        """The k best finished (status ok) trials by reward; ties go to fewer parameters. In a
        multi-fidelity search rewards are compared only within a rung: the highest rung reached
        comes first (its children were trained longest), then the reward."""
        order = "COALESCE(rung, 0) DESC, " if self._rungs else ""
        rows = self.conn.execute(
            f"SELECT * FROM trials WHERE status = 'ok' ORDER BY {order}reward DESC, params ASC, id ASC LIMIT ?", (k,)
        )
        return [self._trial(r) for r in rows]

    def at_rung(self, rung: int, k: int) -> list[Trial]:
        """The k best finished trials whose highest rung is `rung` (0: never promoted), by reward,
        then fewer parameters, then the earlier trial."""
        rows = self.conn.execute(
            "SELECT * FROM trials WHERE status = 'ok' AND COALESCE(rung, 0) = ? "
            "ORDER BY reward DESC, params ASC, id ASC LIMIT ?",
            (rung, k),
        )
        return [self._trial(r) for r in rows]

    def stop_thresholds(self, before_update: int, epochs: int, min_curves: int) -> tuple[float | None, ...]:
        """Median rule: per epoch, the median validation accuracy of the children first sampled
        before `before_update` (so a replayed update sees exactly what it saw the first time);
        None where fewer than `min_curves` children reached that epoch."""
        import statistics

        rows = self.conn.execute(
            "SELECT curve FROM trials WHERE curve IS NOT NULL AND status = 'ok' AND origin_update < ?", (before_update,)
        )
        curves = [json.loads(r[0]) for r in rows]
        out: list[float | None] = []
        for e in range(epochs):
            at = [c[e] for c in curves if len(c) > e]
            out.append(statistics.median(at) if len(at) >= min_curves else None)
        return tuple(out)

    def most_common_error(self) -> tuple[str | None, int]:
        """The error of the most failed children, and how many failed with it."""
        row = self.conn.execute(
            "SELECT error, COUNT(*) AS n FROM trials WHERE status = 'failed' GROUP BY error ORDER BY n DESC LIMIT 1"
        ).fetchone()
        return (row["error"], int(row["n"])) if row is not None else (None, 0)

    def status_counts(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, COUNT(*) AS n FROM trials GROUP BY status")
        counts = {"ok": 0, "rejected": 0, "failed": 0, "stopped": 0}
        counts.update({r["status"]: r["n"] for r in rows})
        return counts

    # -- samples and updates ----------------------------------------------------------------
    def add_sample(
        self,
        update_index: int,
        position: int,
        actions: list[int],
        arch_key: str,
        trial_id: int,
        reward: float,
        reused: bool,
    ) -> None:
        """The sample at (update, position); one recorded there before (a resumed search asks its
        update in flight again and gets the same proposals) is replaced, atomically."""
        own = not self.conn.in_transaction
        if own:
            self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute("DELETE FROM samples WHERE update_index = ? AND position = ?", (update_index, position))
            self.conn.execute(
                "INSERT INTO samples(update_index, position, actions, arch_key, trial_id, reward, reused) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (update_index, position, json.dumps(actions), arch_key, trial_id, reward, int(reused)),
            )
            if own:
                self.conn.execute("COMMIT")
        except BaseException:
            if own:
                self.conn.execute("ROLLBACK")
            raise

    def set_told(self, update_index: int, rewards: list[float]) -> None:
        """What the controller was told for each sample of an update, by position (the reward, or
        under --objectives its scalarisation), before it learns from them."""
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(
            "UPDATE samples SET told = ? WHERE update_index = ? AND position = ?",
            [(float(r), update_index, i) for i, r in enumerate(rewards)],
        )
        self.conn.execute("COMMIT")

    def told(self, before_update: int) -> list[sqlite3.Row]:
        """The samples of the updates before `before_update`, in the order told, with what the
        controller was told (`told`; the reward in databases written before it was kept)."""
        return self.conn.execute(
            "SELECT update_index, position, actions, trial_id, COALESCE(told, reward) AS told FROM samples "
            "WHERE update_index < ? ORDER BY update_index, position",
            (before_update,),
        ).fetchall()

    def samples(self) -> Iterator[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM samples ORDER BY update_index, position")

    def sample_count(self, before_update: int | None = None) -> int:
        """Samples recorded (of the updates before `before_update` when given)."""
        if before_update is None:
            return int(self.conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0])
        row = self.conn.execute("SELECT COUNT(*) FROM samples WHERE update_index < ?", (before_update,)).fetchone()
        return int(row[0])

    def reused_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM samples WHERE reused = 1").fetchone()[0])

    def integrity_check(self) -> str:
        return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])

    def add_update(self, update_index: int, stats: dict[str, float]) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO updates(update_index, loss, entropy, baseline, mean_reward, finished_at, stats) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                update_index,
                stats.get("loss"),
                stats.get("entropy"),
                stats.get("baseline"),
                stats.get("mean_reward"),
                time.time(),
                json.dumps(
                    {k: None if v is None else float(v) for k, v in stats.items()}
                ),  # all it reported, e.g. the predictor's surrogate record
            ),
        )

    def updates(self) -> list[dict[str, Any]]:
        """Each controller update's row, its `stats` (what the controller reported) decoded ({}
        in databases written before they were kept)."""
        rows = [dict(r) for r in self.conn.execute("SELECT * FROM updates ORDER BY update_index")]
        for row in rows:
            row["stats"] = json.loads(row["stats"]) if row.get("stats") else {}
        return rows
