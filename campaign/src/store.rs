//! SQLite store: connection setup and versioned schema migrations.
//!
//! Invariants:
//! - WAL journal, `synchronous=NORMAL`, foreign keys on, for every connection.
//! - `PRAGMA user_version` = number of migrations applied; [`MIGRATIONS`] is append-only and
//!   applied in order inside one transaction each, so a crash mid-upgrade leaves the previous
//!   version intact.
//! - Segment / group / slice membership is a roaring bitmap of dense `u32` subscriber ids,
//!   stored as a BLOB in the portable roaring serialization format.
//! - Times are Unix seconds (`INTEGER`), UTC.

use std::path::Path;

use roaring::RoaringBitmap;
use rusqlite::Connection;

use crate::error::StoreError;

/// Ordered schema migrations; index + 1 is the `user_version` after applying it.
pub const MIGRATIONS: &[&str] = &[
    // 1: subscribers (columnar table persisted row-wise), dictionaries, segments.
    r#"
    CREATE TABLE dict (col TEXT NOT NULL, code INTEGER NOT NULL, value TEXT NOT NULL,
                       PRIMARY KEY (col, code)) WITHOUT ROWID;
    CREATE TABLE custom_columns (idx INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE subscribers (id INTEGER PRIMARY KEY, msisdn INTEGER NOT NULL,
        brand INTEGER NOT NULL, region INTEGER NOT NULL, city INTEGER NOT NULL,
        arpu REAL, age REAL, plan INTEGER NOT NULL);
    CREATE TABLE subscriber_custom (sub_id INTEGER NOT NULL, col INTEGER NOT NULL,
        code INTEGER NOT NULL, PRIMARY KEY (sub_id, col)) WITHOUT ROWID;
    CREATE TABLE segments (id INTEGER PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL,
        definition TEXT NOT NULL, members BLOB NOT NULL, count INTEGER NOT NULL,
        created_at INTEGER NOT NULL);
    CREATE TABLE segment_steps (segment_id INTEGER NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
        step INTEGER NOT NULL, op TEXT NOT NULL, definition TEXT NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (segment_id, step));
    "#,
    // 2: hierarchy, approval and transitions.
    r#"
    CREATE TABLE campaigns (id INTEGER PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL);
    CREATE TABLE activities (id INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id), name TEXT NOT NULL);
    CREATE TABLE tasks (id INTEGER PRIMARY KEY, activity_id INTEGER REFERENCES activities(id),
        name TEXT NOT NULL, state TEXT NOT NULL, created_at INTEGER NOT NULL);
    CREATE TABLE transitions (id INTEGER PRIMARY KEY, task_id INTEGER NOT NULL REFERENCES tasks(id),
        from_state TEXT NOT NULL, to_state TEXT NOT NULL, actor TEXT NOT NULL,
        at INTEGER NOT NULL, note TEXT NOT NULL DEFAULT '');
    "#,
    // 3: bulk sends, plans, slices with cursors, contact rules, contact history, feedback.
    r#"
    CREATE TABLE bulk_sends (id INTEGER PRIMARY KEY, task_id INTEGER NOT NULL REFERENCES tasks(id),
        spec TEXT NOT NULL, planned_at INTEGER);
    CREATE TABLE bulk_groups (bulk_id INTEGER NOT NULL REFERENCES bulk_sends(id),
        name TEXT NOT NULL, is_control INTEGER NOT NULL, members BLOB NOT NULL,
        PRIMARY KEY (bulk_id, name));
    CREATE TABLE bulk_exclusions (bulk_id INTEGER NOT NULL REFERENCES bulk_sends(id),
        phase TEXT NOT NULL, reason TEXT NOT NULL, count INTEGER NOT NULL);
    CREATE TABLE slices (bulk_id INTEGER NOT NULL REFERENCES bulk_sends(id), idx INTEGER NOT NULL,
        start_at INTEGER NOT NULL, window TEXT, members BLOB NOT NULL,
        cursor INTEGER NOT NULL DEFAULT 0, checked INTEGER NOT NULL DEFAULT 0,
        done INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (bulk_id, idx));
    CREATE TABLE exclusion_lists (kind TEXT NOT NULL, channel TEXT NOT NULL DEFAULT '',
        name TEXT NOT NULL DEFAULT '', members BLOB NOT NULL, PRIMARY KEY (kind, channel, name));
    CREATE TABLE offer_conflicts (offer_a TEXT NOT NULL, offer_b TEXT NOT NULL,
        PRIMARY KEY (offer_a, offer_b));
    CREATE TABLE contacts (id INTEGER PRIMARY KEY, sub_id INTEGER NOT NULL, task_id INTEGER NOT NULL,
        bulk_id INTEGER NOT NULL, slice INTEGER NOT NULL, grp TEXT NOT NULL, channel TEXT NOT NULL,
        offer TEXT NOT NULL, campaign_type TEXT NOT NULL, at INTEGER NOT NULL,
        gateway_id TEXT, state TEXT NOT NULL DEFAULT 'sent', state_at INTEGER);
    CREATE INDEX contacts_at ON contacts(at);
    CREATE INDEX contacts_gateway ON contacts(gateway_id);
    CREATE INDEX contacts_sub ON contacts(sub_id, at);
    CREATE TABLE conversions (id INTEGER PRIMARY KEY, sub_id INTEGER NOT NULL,
        task_id INTEGER NOT NULL, bulk_id INTEGER NOT NULL, grp TEXT NOT NULL,
        channel TEXT NOT NULL, kind TEXT NOT NULL, offer TEXT NOT NULL, at INTEGER NOT NULL);
    CREATE TABLE replies (id INTEGER PRIMARY KEY, msisdn INTEGER NOT NULL, text TEXT NOT NULL,
        at INTEGER NOT NULL);
    "#,
    // 4: reply routing. A task's extension on a service number (the source address of its
    // sends), the frozen source of each planned bulk send, the route and outcome of each
    // reply, how a conversion was attributed, and unsubscribes.
    r#"
    CREATE TABLE task_extensions (task_id INTEGER PRIMARY KEY REFERENCES tasks(id),
        service_number TEXT NOT NULL, extension TEXT NOT NULL, assigned_at INTEGER NOT NULL);
    CREATE INDEX task_extensions_addr ON task_extensions(service_number, extension);
    ALTER TABLE bulk_sends ADD COLUMN source TEXT;
    ALTER TABLE replies ADD COLUMN to_addr TEXT NOT NULL DEFAULT '';
    ALTER TABLE replies ADD COLUMN task_id INTEGER;
    ALTER TABLE replies ADD COLUMN outcome TEXT NOT NULL DEFAULT '';
    ALTER TABLE conversions ADD COLUMN via TEXT NOT NULL DEFAULT '';
    CREATE TABLE unsubscribes (id INTEGER PRIMARY KEY, sub_id INTEGER NOT NULL,
        task_id INTEGER, bulk_id INTEGER, grp TEXT NOT NULL DEFAULT '', channel TEXT NOT NULL,
        via TEXT NOT NULL, text TEXT NOT NULL, at INTEGER NOT NULL);
    CREATE INDEX unsubscribes_task ON unsubscribes(task_id);
    "#,
    // 5: identity and tenancy (crate::identity). Organisations as a tree with exactly one
    // root, users with roles, API keys and console sessions stored as SHA-256 hex; every
    // campaign object gets an owning organisation and who/when of its last write. Rows
    // from before this version keep org_id NULL, which means "the root organisation"
    // (crate::identity::Scope); the root is created by bootstrap. Transitions record the
    // authenticated user id (NULL for the CLI and the runner) next to the actor name.
    r#"
    CREATE TABLE orgs (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES orgs(id),
        name TEXT NOT NULL UNIQUE,
        level TEXT NOT NULL CHECK (level IN ('province', 'city', 'county')));
    CREATE UNIQUE INDEX orgs_one_root ON orgs((parent_id IS NULL)) WHERE parent_id IS NULL;
    CREATE INDEX orgs_parent ON orgs(parent_id);
    CREATE TABLE users (id INTEGER PRIMARY KEY, org_id INTEGER NOT NULL REFERENCES orgs(id),
        name TEXT NOT NULL UNIQUE, roles TEXT NOT NULL, password_hash TEXT,
        disabled INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,
        created_by INTEGER REFERENCES users(id));
    CREATE TABLE api_keys (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
        sha256_hex TEXT NOT NULL UNIQUE, label TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL, revoked_at INTEGER);
    CREATE TABLE sessions (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
        sha256_hex TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL, ended_at INTEGER);
    ALTER TABLE campaigns ADD COLUMN org_id INTEGER REFERENCES orgs(id);
    ALTER TABLE campaigns ADD COLUMN created_by INTEGER REFERENCES users(id);
    ALTER TABLE campaigns ADD COLUMN updated_by INTEGER REFERENCES users(id);
    ALTER TABLE campaigns ADD COLUMN updated_at INTEGER;
    ALTER TABLE activities ADD COLUMN org_id INTEGER REFERENCES orgs(id);
    ALTER TABLE activities ADD COLUMN created_by INTEGER REFERENCES users(id);
    ALTER TABLE activities ADD COLUMN updated_by INTEGER REFERENCES users(id);
    ALTER TABLE activities ADD COLUMN updated_at INTEGER;
    ALTER TABLE tasks ADD COLUMN org_id INTEGER REFERENCES orgs(id);
    ALTER TABLE tasks ADD COLUMN created_by INTEGER REFERENCES users(id);
    ALTER TABLE tasks ADD COLUMN updated_by INTEGER REFERENCES users(id);
    ALTER TABLE tasks ADD COLUMN updated_at INTEGER;
    ALTER TABLE segments ADD COLUMN org_id INTEGER REFERENCES orgs(id);
    ALTER TABLE segments ADD COLUMN created_by INTEGER REFERENCES users(id);
    ALTER TABLE segments ADD COLUMN updated_by INTEGER REFERENCES users(id);
    ALTER TABLE segments ADD COLUMN updated_at INTEGER;
    ALTER TABLE bulk_sends ADD COLUMN org_id INTEGER REFERENCES orgs(id);
    ALTER TABLE bulk_sends ADD COLUMN created_by INTEGER REFERENCES users(id);
    ALTER TABLE bulk_sends ADD COLUMN updated_by INTEGER REFERENCES users(id);
    ALTER TABLE bulk_sends ADD COLUMN updated_at INTEGER;
    ALTER TABLE transitions ADD COLUMN user_id INTEGER REFERENCES users(id);
    CREATE INDEX campaigns_org ON campaigns(org_id);
    CREATE INDEX activities_org ON activities(org_id);
    CREATE INDEX tasks_org ON tasks(org_id);
    CREATE INDEX segments_org ON segments(org_id);
    CREATE INDEX bulk_sends_org ON bulk_sends(org_id);
    CREATE INDEX bulk_sends_task ON bulk_sends(task_id);
    "#,
    // 6: approval chains (crate::approval): approval state of campaigns and activities,
    // configured chains, frozen per-round chains, the trail.
    crate::approval::APPROVAL_SCHEMA,
    // 7: exclusion lists keyed by msisdn (issue 16): a number listed before its subscriber
    // row is imported is kept and excluded once it is. `exclusion_lists.members` (ids) is
    // folded into this table at open ([`crate::rules::fold_legacy_members`]).
    r#"
    CREATE TABLE list_numbers (kind TEXT NOT NULL, channel TEXT NOT NULL DEFAULT '',
        name TEXT NOT NULL DEFAULT '', msisdn INTEGER NOT NULL, added_at INTEGER NOT NULL,
        PRIMARY KEY (kind, channel, name, msisdn)) WITHOUT ROWID;
    CREATE INDEX list_numbers_msisdn ON list_numbers(msisdn);
    "#,
    // 8: subscriber events and triggered tasks (crate::triggers, crate::events).
    crate::triggers::TRIGGER_SCHEMA,
    // 9: triggered decisions as one row per event, hold-outs, per-trigger counts
    // (replaces `trigger_outcomes`).
    crate::triggers::TRIGGER_DECISIONS_SCHEMA,
];

/// Opens (creating if needed) the database at `path` and migrates it to the latest schema.
///
/// # Errors
/// [`StoreError`] on SQLite failure or when the file has a newer schema than this binary.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    setup(conn)
}

/// Opens a private in-memory database (tests, demos).
///
/// # Errors
/// [`StoreError`] on SQLite failure.
pub fn open_in_memory() -> Result<Connection, StoreError> {
    setup(Connection::open_in_memory()?)
}

fn setup(mut conn: Connection) -> Result<Connection, StoreError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 64 MiB of page cache (the default 2 MiB spills a matching step's outcome and
    // contact inserts, with their indexes, to the file mid-transaction), and room for
    // every statement the trigger engine and the contact rules prepare per step (the
    // default 16 evicted some every step).
    conn.pragma_update(None, "cache_size", -65_536)?;
    // A multi-row insert inside a transaction keeps a statement journal; in memory, not a
    // temporary file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&mut conn)?;
    Ok(conn)
}

/// Applies every migration newer than the file's `user_version`.
///
/// # Errors
/// [`StoreError::SchemaTooNew`] when the file is ahead of [`MIGRATIONS`].
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// Serializes a bitmap for a BLOB column.
pub(crate) fn bitmap_to_blob(b: &RoaringBitmap) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.serialized_size());
    // Writing into a Vec cannot fail.
    b.serialize_into(&mut out).unwrap_or_default();
    out
}

/// Deserializes a bitmap BLOB, naming the row on corruption.
pub(crate) fn blob_to_bitmap(
    blob: &[u8],
    table: &'static str,
    id: i64,
) -> Result<RoaringBitmap, StoreError> {
    RoaringBitmap::deserialize_from(blob).map_err(|source| StoreError::Bitmap { table, id, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_idempotent_and_versioned() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.db");
        drop(open(&p).unwrap());
        let mut c = open(&p).unwrap();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        c.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(
            migrate(&mut c),
            Err(StoreError::SchemaTooNew { found: 99, .. })
        ));
    }

    /// Migration 9 converts the outcome rows of a version-8 store: counts, hold-outs and one
    /// packed row per event, so a funnel reads the same numbers after the upgrade.
    #[test]
    fn migration_9_converts_existing_outcomes() {
        let mut c = Connection::open_in_memory().unwrap();
        // Outcome rows without their triggers and tasks: only the conversion is under test.
        c.pragma_update(None, "foreign_keys", "OFF").unwrap();
        for sql in &MIGRATIONS[..8] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 8).unwrap();
        c.execute_batch(
            "INSERT INTO trigger_outcomes (trigger_id, event_seq, task_id, sub_id, outcome,
                reason, offer, channel, held_at, at) VALUES
             (1, 1, 5, 10, 'sent', '', 'o', 'sms', NULL, 100),
             (1, 2, 5, 11, 'sent', '', 'o', 'sms', 90, 100),
             (2, 3, 6, 12, 'sent', '', 'p', 'sms', NULL, 101),
             (1, 3, 5, 12, 'lost', 'arbitration: trigger 2 won', 'o', 'sms', NULL, 101),
             (3, 3, 7, 12, 'control', '', 'q', 'sms', NULL, 101);",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let all = |sql: &str| -> Vec<String> {
            c.prepare(sql)
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(
            all(
                "SELECT format('%d %d %s %s %d %d', trigger_id, at, outcome, reason, n, held)
                 FROM trigger_counts ORDER BY trigger_id, at, outcome"
            ),
            [
                "1 100 sent  2 1",
                "1 101 lost arbitration: trigger 2 won 1 0",
                "2 101 sent  1 0",
                "3 101 control  1 0",
            ]
        );
        assert_eq!(
            all(
                "SELECT format('%d %d %d %s', event_seq, sub_id, at, decisions)
                 FROM trigger_decisions ORDER BY event_seq"
            ),
            [
                r#"1 10 100 [[1,"sent","",null]]"#,
                r#"2 11 100 [[1,"sent","",90]]"#,
                r#"3 12 101 [[1,"lost","arbitration: trigger 2 won",null],[2,"sent","",null]]"#,
            ]
        );
        assert_eq!(
            all(
                "SELECT format('%d %d %d %d %s', trigger_id, event_seq, task_id, sub_id, offer)
                 FROM trigger_control"
            ),
            ["3 3 7 12 q"]
        );
    }

    #[test]
    fn bitmap_blob_round_trip_and_corruption() {
        let b: RoaringBitmap = (0..100_000).step_by(3).collect();
        assert_eq!(blob_to_bitmap(&bitmap_to_blob(&b), "t", 1).unwrap(), b);
        assert!(blob_to_bitmap(&[1, 2, 3], "t", 1).is_err());
    }
}
