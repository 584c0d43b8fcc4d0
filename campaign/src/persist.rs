//! Saving and loading the columnar subscriber table to/from SQLite.
//!
//! Rows are written with one prepared `INSERT OR REPLACE` per changed subscriber inside one
//! transaction (the caller passes the set of changed ids); dictionaries are append-only, so
//! only codes beyond what the file already has are written. Loading rebuilds the columns in
//! id order.

use roaring::RoaringBitmap;
use rusqlite::types::Value;
use rusqlite::{Connection, params};

use crate::error::StoreError;
use crate::table::{STRING_COLUMNS, StrColumn, SubscriberTable};

/// Rows per multi-row INSERT (8 parameters each; SQLite allows 32 766).
const CHUNK: usize = 128;

fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT OR REPLACE INTO subscribers (id, msisdn, brand, region, city, arpu, age, plan) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?,?,?,?,?)");
    }
    sql
}

fn row_values(t: &SubscriberTable, id: u32) -> [Value; 8] {
    let i = id as usize;
    let num = |v: f64| {
        if v.is_nan() {
            Value::Null
        } else {
            Value::Real(v)
        }
    };
    [
        Value::Integer(i64::from(id)),
        Value::Integer(t.msisdn[i] as i64),
        Value::Integer(i64::from(t.strings[0].codes[i])),
        Value::Integer(i64::from(t.strings[1].codes[i])),
        Value::Integer(i64::from(t.strings[2].codes[i])),
        num(t.arpu[i]),
        num(t.age[i]),
        Value::Integer(i64::from(t.strings[3].codes[i])),
    ]
}

/// Writes the rows in `changed` (and any new dictionary entries / custom columns).
///
/// # Errors
/// [`StoreError`] on SQLite failure; nothing is written then (one transaction).
pub fn save(
    conn: &mut Connection,
    t: &SubscriberTable,
    changed: &RoaringBitmap,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    {
        let mut have = tx.prepare("SELECT COALESCE(MAX(code) + 1, 0) FROM dict WHERE col = ?1")?;
        let mut ins =
            tx.prepare("INSERT OR IGNORE INTO dict (col, code, value) VALUES (?1, ?2, ?3)")?;
        let mut save_dict = |col: &str, c: &StrColumn| -> Result<(), StoreError> {
            let from: i64 = have.query_row([col], |r| r.get(0))?;
            for (code, v) in c.dict.values().enumerate().skip(from as usize) {
                ins.execute(params![col, code as i64, v])?;
            }
            Ok(())
        };
        for (k, name) in STRING_COLUMNS.iter().enumerate() {
            save_dict(name, &t.strings[k])?;
        }
        let mut cc =
            tx.prepare("INSERT OR IGNORE INTO custom_columns (idx, name) VALUES (?1, ?2)")?;
        for (i, (name, c)) in t.custom.iter().enumerate() {
            cc.execute(params![i as i64, name])?;
            save_dict(&format!("custom:{name}"), c)?;
        }
        let has_custom = !t.custom.is_empty();
        let mut del_custom = tx.prepare("DELETE FROM subscriber_custom WHERE sub_id = ?1")?;
        let mut custom = tx.prepare(
            "INSERT OR REPLACE INTO subscriber_custom (sub_id, col, code) VALUES (?1, ?2, ?3)",
        )?;
        // Multi-row statements: per-statement overhead dominates single-row inserts.
        let mut chunk_stmt = tx.prepare(&insert_sql(CHUNK))?;
        let mut one_stmt = tx.prepare(&insert_sql(1))?;
        let ids: Vec<u32> = changed
            .iter()
            .filter(|&id| (id as usize) < t.msisdn.len())
            .collect();
        let mut chunks = ids.chunks_exact(CHUNK);
        for c in &mut chunks {
            chunk_stmt.execute(rusqlite::params_from_iter(
                c.iter().flat_map(|&id| row_values(t, id)),
            ))?;
        }
        for &id in chunks.remainder() {
            one_stmt.execute(rusqlite::params_from_iter(row_values(t, id)))?;
        }
        if has_custom {
            for &id in &ids {
                let i = id as usize;
                del_custom.execute([id])?;
                for (ci, (_, c)) in t.custom.iter().enumerate() {
                    if c.codes[i] != 0 {
                        custom.execute(params![id, ci as i64, c.codes[i]])?;
                    }
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// Loads the whole table.
///
/// # Errors
/// [`StoreError`] on SQLite failure.
pub fn load(conn: &Connection) -> Result<SubscriberTable, StoreError> {
    let mut t = SubscriberTable::default();
    let mut dict = conn.prepare("SELECT value FROM dict WHERE col = ?1 ORDER BY code")?;
    let mut load_dict = |col: &str, c: &mut StrColumn| -> Result<(), StoreError> {
        let vals = dict.query_map([col], |r| r.get::<_, String>(0))?;
        for (code, v) in vals.enumerate() {
            let v = v?;
            // Code 0 ("") is pre-interned; keep codes aligned with the file.
            if code > 0 {
                c.dict.intern(&v);
            }
        }
        Ok(())
    };
    for (k, name) in STRING_COLUMNS.iter().enumerate() {
        load_dict(name, &mut t.strings[k])?;
    }
    let mut cc = conn.prepare("SELECT name FROM custom_columns ORDER BY idx")?;
    let names: Vec<String> = cc.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    for name in names {
        let mut c = StrColumn::default();
        load_dict(&format!("custom:{name}"), &mut c)?;
        t.custom.push((name, c));
    }
    let mut rows = conn.prepare(
        "SELECT msisdn, brand, region, city, arpu, age, plan FROM subscribers ORDER BY id",
    )?;
    let mut q = rows.query([])?;
    while let Some(r) = q.next()? {
        let msisdn = r.get::<_, i64>(0)? as u64;
        let id = t.msisdn.len() as u32;
        t.msisdn.push(msisdn);
        t.index.insert(msisdn, id);
        for (k, col) in [1usize, 2, 3, 6].into_iter().enumerate() {
            t.strings[k].codes.push(r.get(col)?);
        }
        t.arpu.push(r.get::<_, Option<f64>>(4)?.unwrap_or(f64::NAN));
        t.age.push(r.get::<_, Option<f64>>(5)?.unwrap_or(f64::NAN));
    }
    let n = t.msisdn.len();
    for (_, c) in &mut t.custom {
        c.codes = vec![0; n];
    }
    let mut cv = conn.prepare("SELECT sub_id, col, code FROM subscriber_custom")?;
    let mut q = cv.query([])?;
    while let Some(r) = q.next()? {
        let (id, col, code): (i64, i64, u32) = (r.get(0)?, r.get(1)?, r.get(2)?);
        if let Some((_, c)) = t.custom.get_mut(col as usize)
            && let Some(slot) = c.codes.get_mut(id as usize)
        {
            *slot = code;
        }
    }
    Ok(t)
}
