//! Schema migrations: a versioned list, each applied in one transaction
//! with its version recorded, in order, at start. A database at a version
//! newer than this list is refused rather than used.

use super::{Db, DbError, Result, Tx, Value};

/// (version, SQL statements). `{ID}` is an auto-numbered primary key,
/// `{BLOB}` a bytes column.
pub const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1,
        &[
            "CREATE TABLE groups (
            id {ID},
            name TEXT NOT NULL UNIQUE,
            follows TEXT NOT NULL,
            token_hash {BLOB} NOT NULL,
            created BIGINT NOT NULL)",
            "CREATE TABLE machines (
            id {ID},
            key_id TEXT NOT NULL UNIQUE,
            public_key {BLOB} NOT NULL UNIQUE,
            group_id BIGINT NOT NULL REFERENCES groups(id),
            hostname TEXT NOT NULL,
            enrolled BIGINT NOT NULL,
            last_seen BIGINT NOT NULL,
            last_report BIGINT)",
            "CREATE TABLE reports (
            id {ID},
            machine BIGINT NOT NULL REFERENCES machines(id),
            received BIGINT NOT NULL,
            health TEXT NOT NULL,
            booted_commit TEXT,
            booted_version TEXT,
            staged_commit TEXT,
            drift_etc BIGINT,
            drift_var BIGINT,
            body TEXT NOT NULL)",
            "CREATE INDEX reports_by_machine ON reports (machine, id)",
            "CREATE TABLE nonces (
            key_id TEXT NOT NULL,
            nonce TEXT NOT NULL,
            at BIGINT NOT NULL,
            PRIMARY KEY (key_id, nonce))",
            "CREATE INDEX nonces_by_time ON nonces (at)",
        ],
    ),
    (
        2,
        &[
            // Commits that went bad on the machine, space-separated: a
            // rollout counts its failures from them.
            "ALTER TABLE reports ADD COLUMN bad_commits TEXT NOT NULL DEFAULT ''",
            "CREATE TABLE rollouts (
            id {ID},
            group_id BIGINT NOT NULL REFERENCES groups(id),
            target_commit TEXT NOT NULL,
            previous_commit TEXT,
            waves TEXT NOT NULL,
            max_failures BIGINT NOT NULL,
            state TEXT NOT NULL,
            opened BIGINT NOT NULL,
            failures BIGINT NOT NULL,
            created BIGINT NOT NULL,
            updated BIGINT NOT NULL)",
            "CREATE INDEX rollouts_by_group ON rollouts (group_id, id)",
        ],
    ),
    (
        3,
        &[
            "CREATE TABLE operators (
            id {ID},
            name TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            created BIGINT NOT NULL)",
            // A session by the SHA-256 of its cookie (a copy of the
            // database holds no usable cookie), with its CSRF token.
            "CREATE TABLE sessions (
            id_hash {BLOB} PRIMARY KEY,
            operator BIGINT NOT NULL REFERENCES operators(id),
            csrf TEXT NOT NULL,
            expires BIGINT NOT NULL)",
        ],
    ),
    (
        4,
        // A calendar event (systemd.time(7)): waves open only in its minutes.
        &["ALTER TABLE rollouts ADD COLUMN open_window TEXT"],
    ),
    (
        5,
        &[
            // What a group's machines keep (patterns, one a line), and
            // whether a machine enrolling with an old one's hardware id
            // takes its state without an operator.
            "ALTER TABLE groups ADD COLUMN state_keep TEXT NOT NULL DEFAULT '/etc/ssh/ssh_host_*'",
            "ALTER TABLE groups ADD COLUMN auto_replace BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE machines ADD COLUMN hardware TEXT",
            "ALTER TABLE machines ADD COLUMN replaced_by BIGINT",
            // A kept file: its clear metadata, and its content sealed
            // (ChaCha20-Poly1305) by key `key_id` for machine `sealed_for`.
            "CREATE TABLE state_files (
            machine BIGINT NOT NULL REFERENCES machines(id),
            path TEXT NOT NULL,
            size BIGINT NOT NULL,
            mode BIGINT NOT NULL,
            uid BIGINT NOT NULL,
            gid BIGINT NOT NULL,
            changed BIGINT NOT NULL,
            version TEXT NOT NULL,
            sealed_for TEXT NOT NULL,
            key_id TEXT NOT NULL,
            nonce {BLOB} NOT NULL,
            sealed {BLOB} NOT NULL,
            PRIMARY KEY (machine, path))",
            "CREATE INDEX state_files_by_key ON state_files (key_id)",
            "CREATE TABLE replacements (
            id {ID},
            old_machine BIGINT NOT NULL REFERENCES machines(id),
            hardware TEXT NOT NULL,
            created BIGINT NOT NULL,
            used_by BIGINT)",
            "CREATE TABLE state_log (
            id {ID},
            machine TEXT NOT NULL,
            at BIGINT NOT NULL,
            event TEXT NOT NULL,
            detail TEXT NOT NULL)",
        ],
    ),
];

fn current(tx: &mut dyn Tx) -> Result<i64> {
    Ok(tx
        .query_one("SELECT MAX(version) FROM schema_migrations", &[])?
        .map(|r| r.opt_int(0))
        .transpose()?
        .flatten()
        .unwrap_or(0))
}

pub fn run(db: &Db) -> Result<()> {
    let pg = db.kind() == "postgresql";
    db.tx(|tx| {
        tx.exec(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY, applied BIGINT NOT NULL)",
            &[],
        )
        .map(drop)
    })?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    for (version, statements) in MIGRATIONS {
        db.tx(|tx| {
            if pg {
                // Two servers starting at once: one migrates, the other
                // waits and then finds it done.
                tx.exec("SELECT pg_advisory_xact_lock(7375746174650001)", &[])?;
            }
            let at = current(tx)?;
            if at > known {
                return Err(DbError::TooNew {
                    db: db.target().to_string(),
                    found: at,
                    known,
                });
            }
            if at >= *version {
                return Ok(());
            }
            for sql in *statements {
                tx.exec(&db.dialect(sql), &[])?;
            }
            tx.exec(
                "INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)",
                &[Value::Int(*version), Value::Int(crate::now())],
            )?;
            Ok(())
        })?;
    }
    Ok(())
}
