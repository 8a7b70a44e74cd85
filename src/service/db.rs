//! The service's records in SQLite: uploaded inputs and packaged items.
//! One connection behind a mutex (the service writes a few rows a
//! minute); callers on tokio go through `spawn_blocking`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use anyhow::anyhow;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// Where a record is. Inputs are `Ingested` once stored and probed; a
/// packaged item goes `Ingested` (queued) → `Fragmented` (being cut into
/// segments, each encrypted as it is cut) → `Encrypted` (every segment
/// done, the files going into place) → `Ready`, or `Failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Status {
    Ingested,
    Fragmented,
    Encrypted,
    Ready,
    Failed,
}

impl Status {
    /// Not finished: a job in this state is run again at start.
    pub fn unfinished(self) -> bool {
        matches!(
            self,
            Status::Ingested | Status::Fragmented | Status::Encrypted
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ingested => "Ingested",
            Status::Fragmented => "Fragmented",
            Status::Encrypted => "Encrypted",
            Status::Ready => "Ready",
            Status::Failed => "Failed",
        })
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "Ingested" => Status::Ingested,
            "Fragmented" => Status::Fragmented,
            "Encrypted" => Status::Encrypted,
            "Ready" => Status::Ready,
            "Failed" => Status::Failed,
            _ => return Err(format!("unknown status '{s}'")),
        })
    }
}

/// An uploaded file.
#[derive(Debug, Clone)]
pub struct Input {
    pub id: i64,
    /// The client's file name, as text only (never a path).
    pub original_name: String,
    /// The file's name under uploads/ (generated).
    pub stored: String,
    pub size: u64,
    pub status: Status,
    /// The probe's findings, as the JSON the upload answered with.
    pub probe: serde_json::Value,
    pub created: i64,
}

/// A packaging job and its result.
#[derive(Debug, Clone)]
pub struct Packaged {
    pub id: i64,
    pub input_id: i64,
    /// "cbcs" or "cenc".
    pub scheme: String,
    /// Lower-case hex. The key is kept for the page's player; see the
    /// module doc of `service`.
    pub key_hex: String,
    pub kid_hex: String,
    pub status: Status,
    pub error: Option<String>,
    pub created: i64,
}

pub struct Db {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS input_content (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    original_name TEXT NOT NULL,
    stored TEXT NOT NULL,
    size INTEGER NOT NULL,
    status TEXT NOT NULL,
    probe TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS packaged_content (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    input_id INTEGER NOT NULL REFERENCES input_content(id),
    scheme TEXT NOT NULL,
    key_hex TEXT NOT NULL,
    kid_hex TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    created INTEGER NOT NULL
);
";

fn now() -> i64 {
    crate::packet::unix_now() as i64
}

fn status_of(s: String) -> rusqlite::Result<Status> {
    s.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

fn input_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Input> {
    let probe: String = r.get(5)?;
    Ok(Input {
        id: r.get(0)?,
        original_name: r.get(1)?,
        stored: r.get(2)?,
        size: r.get::<_, i64>(3)?.max(0) as u64,
        status: status_of(r.get(4)?)?,
        probe: serde_json::from_str(&probe).unwrap_or(serde_json::Value::Null),
        created: r.get(6)?,
    })
}

fn packaged_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Packaged> {
    Ok(Packaged {
        id: r.get(0)?,
        input_id: r.get(1)?,
        scheme: r.get(2)?,
        key_hex: r.get(3)?,
        kid_hex: r.get(4)?,
        status: status_of(r.get(5)?)?,
        error: r.get(6)?,
        created: r.get(7)?,
    })
}

const INPUT_COLS: &str = "id, original_name, stored, size, status, probe, created";
const PACKAGED_COLS: &str = "id, input_id, scheme, key_hex, kid_hex, status, error, created";

impl Db {
    pub fn open(path: &Path) -> anyhow::Result<Db> {
        let conn = Connection::open(path)
            .map_err(|e| anyhow!("cannot open the database {}: {e}", path.display()))?;
        // WAL: readers never wait for the workers' status updates.
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "foreign_keys", "ON"))
            .and_then(|_| conn.execute_batch(SCHEMA))
            .map_err(|e| anyhow!("cannot set up the database {}: {e}", path.display()))?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        // A panic while holding the lock leaves SQLite consistent (each
        // statement is atomic), so a poisoned lock is still usable.
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|e| anyhow!("database: {e}"))
    }

    pub fn add_input(
        &self,
        original_name: &str,
        stored: &str,
        size: u64,
        probe: &serde_json::Value,
    ) -> anyhow::Result<i64> {
        self.with(|c| {
            c.execute(
                "INSERT INTO input_content (original_name, stored, size, status, probe, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    original_name,
                    stored,
                    size as i64,
                    Status::Ingested.to_string(),
                    probe.to_string(),
                    now()
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn input(&self, id: i64) -> anyhow::Result<Option<Input>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {INPUT_COLS} FROM input_content WHERE id = ?1"),
                [id],
                input_row,
            )
            .optional()
        })
    }

    pub fn inputs(&self) -> anyhow::Result<Vec<Input>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {INPUT_COLS} FROM input_content ORDER BY id"
            ))?;
            let rows = st.query_map([], input_row)?;
            rows.collect()
        })
    }

    pub fn add_packaged(
        &self,
        input_id: i64,
        scheme: &str,
        key_hex: &str,
        kid_hex: &str,
    ) -> anyhow::Result<i64> {
        self.with(|c| {
            c.execute(
                "INSERT INTO packaged_content (input_id, scheme, key_hex, kid_hex, status, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    input_id,
                    scheme,
                    key_hex,
                    kid_hex,
                    Status::Ingested.to_string(),
                    now()
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn packaged(&self, id: i64) -> anyhow::Result<Option<Packaged>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {PACKAGED_COLS} FROM packaged_content WHERE id = ?1"),
                [id],
                packaged_row,
            )
            .optional()
        })
    }

    pub fn all_packaged(&self) -> anyhow::Result<Vec<Packaged>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {PACKAGED_COLS} FROM packaged_content ORDER BY id"
            ))?;
            let rows = st.query_map([], packaged_row)?;
            rows.collect()
        })
    }

    /// Sets a job's status, only ever forward (a job run again after a
    /// restart passes its old stages again without going back), with the
    /// error text for `Failed`.
    pub fn set_status(&self, id: i64, status: Status, error: Option<&str>) -> anyhow::Result<()> {
        let Some(old) = self.packaged(id)? else {
            return Ok(());
        };
        if status < old.status {
            return Ok(());
        }
        self.with(|c| {
            c.execute(
                "UPDATE packaged_content SET status = ?2, error = ?3 WHERE id = ?1",
                params![id, status.to_string(), error],
            )?;
            Ok(())
        })
    }

    /// Jobs queued or running when the process last stopped, oldest first.
    pub fn unfinished_jobs(&self) -> anyhow::Result<Vec<i64>> {
        Ok(self
            .all_packaged()?
            .into_iter()
            .filter(|p| p.status.unfinished())
            .map(|p| p.id)
            .collect())
    }
}
