"""The engine's database schema, and the migrations that bring an older database up to it.

The states stored are those of :mod:`._states`.
"""

from __future__ import annotations

import sqlite3

# Part status: ready (may be handed out), blocked (a dependency is not done),
# computing (a live subtask holds it), done (a subtask succeeded; `subtask` names it).
# Subtask state: computing, standby (a hand-out a restart may have lost, whose part was
# handed out again as a backup copy: the first of the two verified wins), awaiting
# (redundant tasks: a result waiting for the vote), success, failure, superseded (the
# other copy was verified first), aborted, discarded. ``lost`` is 1 on a subtask that
# was computing when the requestor (re)started: the node may never have received it.
# ``copy_of`` names the subtask a backup copy stands in for. ``verdict`` and ``reason``
# hold the verdict answered (again) to every Verify of a decided subtask; ``told`` is
# kept for older databases and no longer read.
# Redundant tasks: ``parts.wanted`` counts the subtasks still to hand out for a part.
# ``nodes`` counts each node's failed verifications per task and holds its ban.
# Task state: creating (parts still being recorded; removed on restart),
# active, merging (every part done, merge running or interrupted), finished, aborted.
SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    total INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    redundancy INTEGER NOT NULL DEFAULT 1,
    ban_after INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS parts (
    task TEXT NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    params TEXT NOT NULL,
    resources TEXT NOT NULL,
    status TEXT NOT NULL,
    waiting INTEGER NOT NULL,
    subtask TEXT,
    wanted INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (task, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deps (
    task TEXT NOT NULL,
    part INTEGER NOT NULL,
    dep INTEGER NOT NULL,
    PRIMARY KEY (task, part, dep)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subtasks (
    task TEXT NOT NULL,
    id TEXT NOT NULL,
    part INTEGER NOT NULL,
    node TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    reason TEXT,
    told INTEGER NOT NULL DEFAULT 1,
    lost INTEGER NOT NULL DEFAULT 0,
    copy_of TEXT,
    verdict INTEGER,
    PRIMARY KEY (task, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nodes (
    task TEXT NOT NULL,
    node TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    banned TEXT,
    PRIMARY KEY (task, node)
) WITHOUT ROWID;
"""

#: Counters kept by every transaction (triggers), so that a task's status costs the
#: same at any size: parts per status (CreateTask adds its batches' counts itself:
#: a trigger per inserted part would slow it down), subtasks per node and state.
COUNTERS = """
CREATE TABLE IF NOT EXISTS part_counts (
    task TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (task, status)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subtask_counts (
    task TEXT NOT NULL,
    node TEXT NOT NULL,
    state TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (task, node, state)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS count_part_status AFTER UPDATE OF status ON parts
WHEN old.status IS NOT new.status BEGIN
    INSERT INTO part_counts (task, status, n) VALUES (new.task, new.status, 1)
        ON CONFLICT (task, status) DO UPDATE SET n = n + 1;
    UPDATE part_counts SET n = n - 1 WHERE task = old.task AND status = old.status;
END;
CREATE TRIGGER IF NOT EXISTS count_new_subtask AFTER INSERT ON subtasks BEGIN
    INSERT INTO subtask_counts (task, node, state, n) VALUES (new.task, new.node, new.state, 1)
        ON CONFLICT (task, node, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS count_subtask_state AFTER UPDATE OF state ON subtasks
WHEN old.state IS NOT new.state BEGIN
    INSERT INTO subtask_counts (task, node, state, n) VALUES (new.task, new.node, new.state, 1)
        ON CONFLICT (task, node, state) DO UPDATE SET n = n + 1;
    UPDATE subtask_counts SET n = n - 1
        WHERE task = old.task AND node = old.node AND state = old.state;
END;
"""

#: Counters of a database made before they existed, computed once.
COUNT_ALL = """
INSERT INTO part_counts (task, status, n) SELECT task, status, count(*) FROM parts
    GROUP BY task, status;
INSERT INTO subtask_counts (task, node, state, n) SELECT task, node, state, count(*)
    FROM subtasks GROUP BY task, node, state;
"""

#: Indexes, created once the columns they cover exist (after the migrations).
INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS parts_by_name ON parts (task, name);
CREATE INDEX IF NOT EXISTS parts_by_status ON parts (task, status, idx);
CREATE INDEX IF NOT EXISTS deps_by_dep ON deps (task, dep);
DROP INDEX IF EXISTS live_by_node;
CREATE INDEX IF NOT EXISTS current_by_node ON subtasks (task, node)
    WHERE state = 'computing' AND lost = 0;
CREATE INDEX IF NOT EXISTS lost_by_part ON subtasks (task, part)
    WHERE state = 'computing' AND lost = 1;
CREATE INDEX IF NOT EXISTS awaiting_by_node ON subtasks (task, node) WHERE state = 'awaiting';
CREATE INDEX IF NOT EXISTS subtasks_by_part ON subtasks (task, part);
"""

#: Columns added after the first release: (table, column, definition), added to older databases.
MIGRATIONS = (
    ("tasks", "redundancy", "INTEGER NOT NULL DEFAULT 1"),
    ("tasks", "ban_after", "INTEGER NOT NULL DEFAULT 0"),
    ("parts", "wanted", "INTEGER NOT NULL DEFAULT 1"),
    ("subtasks", "reason", "TEXT"),
    ("subtasks", "told", "INTEGER NOT NULL DEFAULT 1"),
    ("subtasks", "lost", "INTEGER NOT NULL DEFAULT 0"),
    ("subtasks", "copy_of", "TEXT"),
    ("subtasks", "verdict", "INTEGER"),
)


def prepare(conn: sqlite3.Connection) -> None:
    """Create what is missing: tables, then the newer columns of an older database, then
    the indexes (some cover those columns)."""
    conn.executescript(SCHEMA)
    for table, column, definition in MIGRATIONS:
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    counted = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'part_counts'"
    ).fetchone()
    conn.executescript(COUNTERS)
    if not counted:
        conn.executescript(f"BEGIN; {COUNT_ALL} COMMIT;")
    conn.executescript(INDEXES)
