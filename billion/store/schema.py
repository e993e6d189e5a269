"""The store's SQLite schema: an ordered list of migrations, one per version (see billion.store.store)."""

from __future__ import annotations

#: what a vote may say: the left/right contestant won, a tie, or both answers were bad
WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
#: where model_a sat on the page
POSITIONS = ("left", "right")

# Each entry is one schema version: statements run in one transaction. Only ever append.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE battles (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            session_id TEXT NOT NULL,
            model_a TEXT NOT NULL,
            model_b TEXT NOT NULL,
            model_a_json TEXT NOT NULL,
            model_b_json TEXT NOT NULL,
            position TEXT NOT NULL CHECK (position IN ('left', 'right')),
            sampling_json TEXT NOT NULL,
            seed INTEGER,
            live_streaming INTEGER NOT NULL DEFAULT 0,
            vote TEXT CHECK (vote IS NULL OR vote IN
                ('model_a', 'model_b', 'tie', 'tie (bothbad)')),
            voted_at TEXT,
            leak_flag INTEGER NOT NULL DEFAULT 0,
            leak_reason TEXT
        )""",
        """CREATE TABLE turns (
            battle_id TEXT NOT NULL REFERENCES battles(id),
            idx INTEGER NOT NULL,
            prompt TEXT NOT NULL,
            answer_a TEXT,
            answer_b TEXT,
            stats_json TEXT,
            created_at TEXT NOT NULL,
            PRIMARY KEY (battle_id, idx)
        )""",
        "CREATE INDEX battles_voted_at ON battles(voted_at)",
        """CREATE TABLE bench_results (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL,
            model TEXT NOT NULL,
            revision TEXT,
            task TEXT NOT NULL,
            settings_json TEXT NOT NULL,
            metric TEXT NOT NULL,
            score REAL NOT NULL,
            stderr REAL,
            n INTEGER,
            machine TEXT NOT NULL,
            library_versions_json TEXT NOT NULL,
            extra_json TEXT NOT NULL
        )""",
        "CREATE INDEX bench_results_model_task ON bench_results(model, task)",
        """CREATE TABLE training_runs (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            base_model TEXT NOT NULL,
            config_json TEXT NOT NULL,
            data_hash TEXT,
            status TEXT NOT NULL,
            output_dir TEXT,
            results_json TEXT
        )""",
    ),
    # v2: extra arena contestants (LoRA adapters from the trainer), kept across restarts.
    (
        """CREATE TABLE arena_contestants (
            name TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            record_json TEXT NOT NULL
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
