//! Versioned SQL migrations, shared by `GET /init` and the `migrate` CLI.
//!
//! Files are `NNNN_name.up.sql` / `NNNN_name.down.sql`. Applied migrations
//! are recorded in `schema_migrations` with the SHA-256 of their up file, so
//! an edited, already-applied migration is refused as drift. A run holds a
//! MySQL `GET_LOCK`, so two concurrent runs never both apply. MySQL commits
//! DDL statement by statement, so a migration is marked dirty before it runs
//! and clean after: a failure half-way leaves it dirty, and every later run
//! refuses until someone repairs the schema and runs `migrate force`.

use mysql_async::prelude::*;
use mysql_async::Conn;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

const LOCK_NAME: &str = "schema_migrations";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: u64,
    pub name: String,
    pub up: String,
    pub down: Option<String>,
    /// SHA-256 (hex) of the up script, line endings normalised.
    pub checksum: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration file {file}: {reason}")]
    BadFile { file: String, reason: String },
    #[error("cannot read the migrations folder {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
    #[error("database: {0}")]
    Db(#[from] mysql_async::Error),
    #[error("another migration run holds the lock (waited {} s)", .0.as_secs())]
    Locked(Duration),
    #[error("migration {version} ({name}) is dirty: a run failed half-way. Repair the schema by hand, then run `migrate force {version}` (if it is now fully applied) or `migrate force {version} --pending` (if fully undone)")]
    Dirty { version: u64, name: String },
    #[error("migration {version} ({name}) was edited after it was applied: checksum {applied} applied, {on_disk} in the file. Add a new migration instead")]
    Drift { version: u64, name: String, applied: String, on_disk: String },
    #[error("migration {version} is recorded as applied but has no file")]
    Missing { version: u64 },
    #[error("migration {version} ({name}) failed at statement {statement}: {source}; it is now marked dirty")]
    Failed { version: u64, name: String, statement: usize, source: mysql_async::Error },
    #[error("migration {version} ({name}) has no down script")]
    NoDown { version: u64, name: String },
    #[error("no migration has version {0}")]
    UnknownVersion(u64),
}

/// Parses `(file name, contents)` pairs into migrations sorted by version.
/// Files that are not `NNNN_name.{up,down}.sql` are an error, not ignored:
/// a misnamed migration must not silently never run.
pub fn parse<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Vec<Migration>, MigrateError> {
    let mut by_version: BTreeMap<u64, (String, Option<String>, Option<String>)> = BTreeMap::new();
    for (file, contents) in files {
        let bad = |reason: &str| MigrateError::BadFile { file: file.to_owned(), reason: reason.to_owned() };
        let (stem, direction) = if let Some(s) = file.strip_suffix(".up.sql") {
            (s, "up")
        } else if let Some(s) = file.strip_suffix(".down.sql") {
            (s, "down")
        } else {
            return Err(bad("expected NNNN_name.up.sql or NNNN_name.down.sql"));
        };
        let (digits, name) = stem.split_once('_').ok_or_else(|| bad("expected NNNN_name"))?;
        let version: u64 = digits.parse().map_err(|_| bad("the version before '_' is not a number"))?;
        if version == 0 || name.is_empty() {
            return Err(bad("the version must be positive and the name non-empty"));
        }
        let entry = by_version.entry(version).or_insert_with(|| (name.to_owned(), None, None));
        if entry.0 != name {
            return Err(bad(&format!("version {version} is used by two names: {} and {name}", entry.0)));
        }
        let slot = if direction == "up" { &mut entry.1 } else { &mut entry.2 };
        if slot.replace(normalise(contents)).is_some() {
            return Err(bad("duplicate file"));
        }
    }
    by_version
        .into_iter()
        .map(|(version, (name, up, down))| {
            let up = up.ok_or_else(|| MigrateError::BadFile {
                file: format!("{version:04}_{name}.up.sql"),
                reason: "missing (a down script without an up script)".into(),
            })?;
            let checksum = hex(&Sha256::digest(up.as_bytes()));
            Ok(Migration { version, name, up, down, checksum })
        })
        .collect()
}

/// The migrations compiled into this binary from `migrations/`.
pub fn embedded() -> Result<Vec<Migration>, MigrateError> {
    parse(embedded::EMBEDDED.iter().copied())
}

/// The migrations in `dir` (the CLI reads the folder, so it sees new files).
pub fn from_dir(dir: &Path) -> Result<Vec<Migration>, MigrateError> {
    let io = |source: std::io::Error| MigrateError::Io { dir: dir.display().to_string(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|x| x == "sql") {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            files.push((name, std::fs::read_to_string(&path).map_err(io)?));
        }
    }
    parse(files.iter().map(|(n, c)| (n.as_str(), c.as_str())))
}

fn normalise(sql: &str) -> String {
    sql.replace("\r\n", "\n")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits a script into statements on `;`, ignoring semicolons inside
/// quotes, backticks and comments. Empty statements are dropped.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            current.push(c);
            if c == '\\' && q != '`' {
                if let Some(n) = chars.next() {
                    current.push(n);
                }
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' | '`' => {
                quote = Some(c);
                current.push(c);
            }
            '-' if chars.peek() == Some(&'-') => skip_line(&mut chars),
            '#' => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = '\0';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
                current.push(' ');
            }
            ';' => {
                let stmt = current.trim();
                if !stmt.is_empty() {
                    out.push(stmt.to_owned());
                }
                current.clear();
            }
            _ => current.push(c),
        }
    }
    let stmt = current.trim();
    if !stmt.is_empty() {
        out.push(stmt.to_owned());
    }
    out
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for n in chars.by_ref() {
        if n == '\n' {
            break;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Applied,
    Pending,
    Dirty,
    /// Applied, but the file changed since.
    Drifted,
    /// Recorded as applied, but no file has this version.
    Missing,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Applied => "applied",
            State::Pending => "pending",
            State::Dirty => "DIRTY",
            State::Drifted => "DRIFTED",
            State::Missing => "MISSING",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    pub version: u64,
    pub name: String,
    pub state: State,
    pub applied_at: Option<String>,
    pub execution_ms: Option<u64>,
}

/// What a run did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// `(version, name, milliseconds)` in the order they ran.
    pub steps: Vec<(u64, String, u64)>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Up: apply up to and including this version. Down: revert every
    /// migration above it (default: only the latest).
    pub to: Option<u64>,
    pub dry_run: bool,
}

struct Recorded {
    version: u64,
    name: String,
    checksum: String,
    dirty: bool,
    applied_at: String,
    execution_ms: u64,
}

pub struct Migrator {
    migrations: Vec<Migration>,
    lock_timeout: Duration,
}

impl Migrator {
    pub fn new(migrations: Vec<Migration>) -> Self {
        Self { migrations, lock_timeout: Duration::from_secs(30) }
    }

    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    async fn ensure_table(conn: &mut Conn) -> Result<(), MigrateError> {
        // The one table the runner creates itself: it records the others.
        conn.query_drop(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version      BIGINT UNSIGNED NOT NULL PRIMARY KEY,
                name         VARCHAR(255)    NOT NULL,
                checksum     CHAR(64)        NOT NULL,
                dirty        TINYINT(1)      NOT NULL DEFAULT 0,
                applied_at   DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
                execution_ms BIGINT UNSIGNED NOT NULL DEFAULT 0
            ) ENGINE = InnoDB",
        )
        .await?;
        Ok(())
    }

    async fn recorded(conn: &mut Conn) -> Result<Vec<Recorded>, MigrateError> {
        let rows: Vec<(u64, String, String, bool, String, u64)> = conn
            .query(
                "SELECT version, name, checksum, dirty, DATE_FORMAT(applied_at, '%Y-%m-%d %H:%i:%s'), execution_ms
                 FROM schema_migrations ORDER BY version",
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(version, name, checksum, dirty, applied_at, execution_ms)| Recorded {
                version,
                name,
                checksum,
                dirty,
                applied_at,
                execution_ms,
            })
            .collect())
    }

    /// Every known version, from the files and the table, with its state.
    pub async fn status(&self, conn: &mut Conn) -> Result<Vec<StatusRow>, MigrateError> {
        Self::ensure_table(conn).await?;
        let recorded = Self::recorded(conn).await?;
        let mut rows: BTreeMap<u64, StatusRow> = BTreeMap::new();
        for m in &self.migrations {
            rows.insert(
                m.version,
                StatusRow {
                    version: m.version,
                    name: m.name.clone(),
                    state: State::Pending,
                    applied_at: None,
                    execution_ms: None,
                },
            );
        }
        for r in recorded {
            let file = self.migrations.iter().find(|m| m.version == r.version);
            let state = match file {
                _ if r.dirty => State::Dirty,
                None => State::Missing,
                Some(m) if m.checksum != r.checksum => State::Drifted,
                Some(_) => State::Applied,
            };
            rows.insert(
                r.version,
                StatusRow {
                    version: r.version,
                    name: r.name,
                    state,
                    applied_at: Some(r.applied_at),
                    execution_ms: Some(r.execution_ms),
                },
            );
        }
        Ok(rows.into_values().collect())
    }

    /// Every problem that would stop a run: dirty, drifted or missing files.
    pub async fn verify(&self, conn: &mut Conn) -> Result<Vec<MigrateError>, MigrateError> {
        Self::ensure_table(conn).await?;
        Ok(self.problems(&Self::recorded(conn).await?))
    }

    fn problems(&self, recorded: &[Recorded]) -> Vec<MigrateError> {
        let mut problems = Vec::new();
        for r in recorded {
            match self.migrations.iter().find(|m| m.version == r.version) {
                _ if r.dirty => problems.push(MigrateError::Dirty { version: r.version, name: r.name.clone() }),
                None => problems.push(MigrateError::Missing { version: r.version }),
                Some(m) if m.checksum != r.checksum => problems.push(MigrateError::Drift {
                    version: m.version,
                    name: m.name.clone(),
                    applied: r.checksum.clone(),
                    on_disk: m.checksum.clone(),
                }),
                Some(_) => {}
            }
        }
        problems
    }

    /// Applies pending migrations in order (up to `opts.to`).
    pub async fn up(&self, conn: &mut Conn, opts: RunOptions) -> Result<Report, MigrateError> {
        self.locked(conn, |me, conn| Box::pin(me.up_locked(conn, opts))).await
    }

    /// Reverts the latest migration, or every one above `opts.to`.
    pub async fn down(&self, conn: &mut Conn, opts: RunOptions) -> Result<Report, MigrateError> {
        self.locked(conn, |me, conn| Box::pin(me.down_locked(conn, opts))).await
    }

    /// Clears a dirty mark after a manual repair: `applied` keeps the
    /// migration as applied (with the file's checksum), otherwise its record
    /// is removed so it counts as pending.
    pub async fn force(&self, conn: &mut Conn, version: u64, applied: bool) -> Result<(), MigrateError> {
        let m =
            self.migrations.iter().find(|m| m.version == version).ok_or(MigrateError::UnknownVersion(version))?.clone();
        self.locked(conn, move |_, conn| {
            Box::pin(async move {
                if applied {
                    conn.exec_drop(
                        "INSERT INTO schema_migrations (version, name, checksum, dirty) VALUES (?, ?, ?, 0)
                         ON DUPLICATE KEY UPDATE dirty = 0, checksum = VALUES(checksum), name = VALUES(name)",
                        (m.version, &m.name, &m.checksum),
                    )
                    .await?;
                } else {
                    conn.exec_drop("DELETE FROM schema_migrations WHERE version = ?", (m.version,)).await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Runs `work` holding the migration lock, releasing it whatever happens.
    async fn locked<'a, T>(
        &'a self,
        conn: &'a mut Conn,
        work: impl for<'c> FnOnce(
            &'c Self,
            &'c mut Conn,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, MigrateError>> + Send + 'c>,
        >,
    ) -> Result<T, MigrateError> {
        Self::ensure_table(conn).await?;
        let secs = self.lock_timeout.as_secs().max(1);
        let got: Option<Option<i64>> = conn.exec_first("SELECT GET_LOCK(?, ?)", (LOCK_NAME, secs)).await?;
        if got.flatten() != Some(1) {
            return Err(MigrateError::Locked(self.lock_timeout));
        }
        let result = work(self, conn).await;
        // The lock also ends with the connection, should this fail.
        let released: Result<Option<Option<i64>>, _> = conn.exec_first("SELECT RELEASE_LOCK(?)", (LOCK_NAME,)).await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "cannot release the migration lock; it ends with the connection");
        }
        result
    }

    async fn up_locked(&self, conn: &mut Conn, opts: RunOptions) -> Result<Report, MigrateError> {
        let recorded = Self::recorded(conn).await?;
        if let Some(problem) = self.problems(&recorded).into_iter().next() {
            return Err(problem);
        }
        let pending: Vec<&Migration> = self
            .migrations
            .iter()
            .filter(|m| !recorded.iter().any(|r| r.version == m.version))
            .filter(|m| opts.to.is_none_or(|to| m.version <= to))
            .collect();
        let mut report = Report { steps: Vec::new(), dry_run: opts.dry_run };
        for m in pending {
            if opts.dry_run {
                report.steps.push((m.version, m.name.clone(), 0));
                continue;
            }
            let started = Instant::now();
            conn.exec_drop(
                "INSERT INTO schema_migrations (version, name, checksum, dirty) VALUES (?, ?, ?, 1)",
                (m.version, &m.name, &m.checksum),
            )
            .await?;
            Self::run_script(conn, m, &m.up).await?;
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            conn.exec_drop(
                "UPDATE schema_migrations SET dirty = 0, applied_at = CURRENT_TIMESTAMP(3), execution_ms = ? WHERE version = ?",
                (ms, m.version),
            )
            .await?;
            tracing::info!(version = m.version, name = %m.name, ms, "migration applied");
            report.steps.push((m.version, m.name.clone(), ms));
        }
        Ok(report)
    }

    async fn down_locked(&self, conn: &mut Conn, opts: RunOptions) -> Result<Report, MigrateError> {
        let recorded = Self::recorded(conn).await?;
        if let Some(problem) = self.problems(&recorded).into_iter().next() {
            return Err(problem);
        }
        let mut applied: Vec<&Recorded> = recorded.iter().collect();
        applied.sort_by_key(|r| std::cmp::Reverse(r.version));
        let targets: Vec<&Recorded> = match opts.to {
            Some(to) => applied.into_iter().filter(|r| r.version > to).collect(),
            None => applied.into_iter().take(1).collect(),
        };
        let mut report = Report { steps: Vec::new(), dry_run: opts.dry_run };
        for r in targets {
            let m = self
                .migrations
                .iter()
                .find(|m| m.version == r.version)
                .ok_or(MigrateError::Missing { version: r.version })?;
            let down =
                m.down.as_ref().ok_or_else(|| MigrateError::NoDown { version: m.version, name: m.name.clone() })?;
            if opts.dry_run {
                report.steps.push((m.version, m.name.clone(), 0));
                continue;
            }
            let started = Instant::now();
            conn.exec_drop("UPDATE schema_migrations SET dirty = 1 WHERE version = ?", (m.version,)).await?;
            Self::run_script(conn, m, down).await?;
            conn.exec_drop("DELETE FROM schema_migrations WHERE version = ?", (m.version,)).await?;
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::info!(version = m.version, name = %m.name, ms, "migration reverted");
            report.steps.push((m.version, m.name.clone(), ms));
        }
        Ok(report)
    }

    async fn run_script(conn: &mut Conn, m: &Migration, script: &str) -> Result<(), MigrateError> {
        for (i, statement) in split_statements(script).iter().enumerate() {
            conn.query_drop(statement).await.map_err(|e| MigrateError::Failed {
                version: m.version,
                name: m.name.clone(),
                statement: i + 1,
                source: e,
            })?;
        }
        Ok(())
    }
}

/// The status table the CLI prints.
pub fn render_status(rows: &[StatusRow]) -> String {
    let name_width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:<8} {:<name_width$} {:<8} {:<19} {:>8}\n", "VERSION", "NAME", "STATE", "APPLIED AT", "MS");
    for r in rows {
        out.push_str(&format!(
            "{:<8} {:<name_width$} {:<8} {:<19} {:>8}\n",
            format!("{:04}", r.version),
            r.name,
            r.state.to_string(),
            r.applied_at.as_deref().unwrap_or("-"),
            r.execution_ms.map_or("-".to_owned(), |ms| ms.to_string()),
        ));
    }
    out
}

/// The next migration's file names: `NNNN_name.up.sql`, `NNNN_name.down.sql`.
pub fn new_file_names(existing: &[Migration], name: &str) -> Result<(String, String), MigrateError> {
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(MigrateError::BadFile { file: name.to_owned(), reason: "names use a-z, 0-9 and _".into() });
    }
    let next = existing.iter().map(|m| m.version).max().unwrap_or(0) + 1;
    Ok((format!("{next:04}_{name}.up.sql"), format!("{next:04}_{name}.down.sql")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_pair_up_by_version_and_sort() {
        let ms = parse([("0002_b.up.sql", "B"), ("0001_a.down.sql", "DROP a"), ("0001_a.up.sql", "CREATE a")])
            .expect("parse");
        assert_eq!(ms.iter().map(|m| (m.version, m.name.as_str())).collect::<Vec<_>>(), vec![(1, "a"), (2, "b")]);
        assert_eq!(ms[0].down.as_deref(), Some("DROP a"));
        assert_eq!(ms[1].down, None);
        assert_eq!(ms[0].checksum.len(), 64);
    }

    #[test]
    fn misnamed_or_orphaned_files_are_errors() {
        assert!(parse([("create.sql", "")]).is_err());
        assert!(parse([("x_a.up.sql", "")]).is_err());
        assert!(parse([("0001_a.down.sql", "")]).is_err());
        assert!(parse([("0001_a.up.sql", ""), ("0001_b.down.sql", "")]).is_err());
    }

    #[test]
    fn checksums_ignore_line_endings_only() {
        let a = parse([("0001_a.up.sql", "CREATE TABLE t (x INT);\n")]).expect("parse");
        let b = parse([("0001_a.up.sql", "CREATE TABLE t (x INT);\r\n")]).expect("parse");
        let c = parse([("0001_a.up.sql", "CREATE TABLE t (x BIGINT);\n")]).expect("parse");
        assert_eq!(a[0].checksum, b[0].checksum);
        assert_ne!(a[0].checksum, c[0].checksum);
    }

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        let sql = "-- a comment; with a semicolon\nCREATE TABLE t (s VARCHAR(5) DEFAULT ';');\n/* block; */ INSERT INTO t VALUES ('a\\';b');\n# hash; comment\nSELECT `we;ird` FROM t";
        let stmts = split_statements(sql);
        assert_eq!(stmts.len(), 3, "{stmts:?}");
        assert!(stmts[0].starts_with("CREATE TABLE"));
        assert!(stmts[1].ends_with("('a\\';b')"));
        assert_eq!(stmts[2], "SELECT `we;ird` FROM t");
    }

    #[test]
    fn the_repository_migrations_embed_and_parse() {
        let ms = embedded().expect("embedded migrations parse");
        assert!(ms.iter().any(|m| m.name == "create_image_evts"));
        assert!(ms.iter().all(|m| m.down.is_some()), "every migration can be reverted");
    }

    #[test]
    fn new_files_take_the_next_version() {
        let ms = parse([("0007_a.up.sql", "")]).expect("parse");
        assert_eq!(new_file_names(&ms, "add_x").expect("names").0, "0008_add_x.up.sql");
        assert!(new_file_names(&ms, "Bad Name").is_err());
    }
}
