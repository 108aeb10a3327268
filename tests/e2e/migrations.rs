//! The `migrate` CLI against a real MariaDB: every promise it makes.

use stack::stack::shared_mariadb;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

struct Db {
    url: String,
    name: String,
    dir: PathBuf,
}

impl Db {
    /// A fresh database and a fresh migrations folder with `files`.
    async fn new(files: &[(&str, &str)]) -> Db {
        let name = format!("mig_{}", stack::unique_id());
        let url = shared_mariadb().await.expect("mariadb").lock().await.create_database(&name).expect("create db");
        let dir = stack::paths::scratch_dir().join(&name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (file, sql) in files {
            std::fs::write(dir.join(file), sql).expect("write migration");
        }
        Db { url, name, dir }
    }

    fn migrate(&self, args: &[&str]) -> Output {
        migrate_cmd(&self.url, &self.dir, args).output().expect("run migrate")
    }

    async fn sql(&self, sql: &str) -> String {
        let db = shared_mariadb().await.expect("mariadb");
        let guard = db.lock().await;
        guard.root_sql(&format!("USE `{}`; {sql}", self.name)).expect("sql")
    }

    async fn tables(&self) -> Vec<String> {
        let mut t: Vec<String> = self.sql("SHOW TABLES").await.lines().map(str::to_owned).collect();
        t.sort();
        t
    }
}

fn migrate_cmd(url: &str, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(stack::paths::bin_dir().join("migrate"));
    cmd.arg("--database-url").arg(url).arg("--dir").arg(dir).args(args);
    cmd
}

fn out(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[track_caller]
fn ok(o: Output) -> String {
    assert!(o.status.success(), "migrate failed: {}", out(&o));
    out(&o)
}

#[track_caller]
fn fails(o: Output) -> String {
    assert!(!o.status.success(), "migrate should have failed: {}", out(&o));
    out(&o)
}

const A: (&str, &str) = ("0001_a.up.sql", "CREATE TABLE a (id INT PRIMARY KEY);");
const A_DOWN: (&str, &str) = ("0001_a.down.sql", "DROP TABLE a;");
const B: (&str, &str) = ("0002_b.up.sql", "CREATE TABLE b (id INT);\nINSERT INTO b VALUES (1), (2);");
const B_DOWN: (&str, &str) = ("0002_b.down.sql", "DROP TABLE b;");
const C: (&str, &str) = ("0003_c.up.sql", "ALTER TABLE b ADD COLUMN note VARCHAR(10) DEFAULT 'x;y';");
const C_DOWN: (&str, &str) = ("0003_c.down.sql", "ALTER TABLE b DROP COLUMN note;");

#[tokio::test]
async fn up_status_down_and_to() {
    let db = Db::new(&[A, A_DOWN, B, B_DOWN, C, C_DOWN]).await;
    let plan = ok(db.migrate(&["up", "--dry-run"]));
    assert!(plan.contains("would apply 0001_a") && plan.contains("would apply 0003_c"), "{plan}");
    assert_eq!(db.tables().await, vec!["schema_migrations"], "a dry run changes nothing");

    let applied = ok(db.migrate(&["up", "--to", "2"]));
    assert!(
        applied.contains("applied 0001_a") && applied.contains("applied 0002_b") && !applied.contains("0003"),
        "{applied}"
    );
    let status = ok(db.migrate(&["status"]));
    assert!(status.lines().any(|l| l.starts_with("0002") && l.contains("applied")), "{status}");
    assert!(status.lines().any(|l| l.starts_with("0003") && l.contains("pending")), "{status}");

    ok(db.migrate(&["up"]));
    assert_eq!(db.sql("SELECT note FROM b ORDER BY id").await.trim(), "x;y\nx;y");
    assert!(ok(db.migrate(&["up"])).contains("nothing to do"));
    assert!(ok(db.migrate(&["verify"])).contains("ok: 3 migrations"));

    let reverted = ok(db.migrate(&["down", "--yes"]));
    assert!(reverted.contains("reverted 0003_c") && !reverted.contains("0002"), "{reverted}");
    ok(db.migrate(&["down", "--to", "0", "--database", &db.name]));
    assert_eq!(db.tables().await, vec!["schema_migrations"]);
    assert_eq!(db.sql("SELECT COUNT(*) FROM schema_migrations").await.trim(), "0");
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused_as_drift() {
    let db = Db::new(&[A, A_DOWN]).await;
    ok(db.migrate(&["up"]));
    std::fs::write(db.dir.join(A.0), "CREATE TABLE a (id BIGINT PRIMARY KEY);").expect("edit");
    std::fs::write(db.dir.join(B.0), B.1).expect("add");
    let refused = fails(db.migrate(&["up"]));
    assert!(refused.contains("edited after it was applied"), "{refused}");
    assert!(fails(db.migrate(&["verify"])).contains("migration 1 (a) was edited"));
    assert!(ok(db.migrate(&["status"])).contains("DRIFTED"));
    assert_eq!(db.tables().await, vec!["a", "schema_migrations"], "0002 was not applied past the drift");
}

#[tokio::test]
async fn a_half_applied_migration_is_dirty_until_forced() {
    let broken = ("0002_b.up.sql", "CREATE TABLE b (id INT);\nINSERT INTO no_such_table VALUES (1);");
    let db = Db::new(&[A, A_DOWN, broken, B_DOWN]).await;
    let failed = fails(db.migrate(&["up"]));
    assert!(failed.contains("failed at statement 2") && failed.contains("dirty"), "{failed}");
    assert!(ok(db.migrate(&["status"])).lines().any(|l| l.starts_with("0002") && l.contains("DIRTY")));
    let refused = fails(db.migrate(&["up"]));
    assert!(refused.contains("is dirty"), "{refused}");
    assert!(fails(db.migrate(&["down", "--yes"])).contains("is dirty"));

    // The operator repairs by hand (drops the half-made table), fixes the
    // file, and marks the migration pending again.
    db.sql("DROP TABLE b").await;
    std::fs::write(db.dir.join("0002_b.up.sql"), B.1).expect("fix");
    ok(db.migrate(&["force", "2", "--pending"]));
    ok(db.migrate(&["up"]));
    assert_eq!(db.sql("SELECT COUNT(*) FROM b").await.trim(), "2");
    assert!(ok(db.migrate(&["verify"])).contains("ok"));
}

#[tokio::test]
async fn two_concurrent_runs_apply_each_migration_once() {
    let slow = ("0002_slow.up.sql", "DO SLEEP(2);\nCREATE TABLE slow (id INT);\nINSERT INTO slow VALUES (1);");
    let slow_down = ("0002_slow.down.sql", "DROP TABLE slow;");
    let db = Db::new(&[A, A_DOWN, slow, slow_down]).await;
    let first = migrate_cmd(&db.url, &db.dir, &["up"]).spawn().expect("spawn");
    let second = migrate_cmd(&db.url, &db.dir, &["up"]).spawn().expect("spawn");
    let (first, second) = (first.wait_with_output().expect("wait"), second.wait_with_output().expect("wait"));
    assert!(first.status.success() && second.status.success(), "{} / {}", out(&first), out(&second));
    assert_eq!(db.sql("SELECT COUNT(*) FROM slow").await.trim(), "1", "applied exactly once");
    assert_eq!(db.sql("SELECT COUNT(*) FROM schema_migrations WHERE dirty = 0").await.trim(), "2");
}

#[tokio::test]
async fn new_creates_the_next_pair() {
    let db = Db::new(&[A, A_DOWN]).await;
    let created = ok(db.migrate(&["new", "add_index"]));
    assert!(created.contains("0002_add_index.up.sql"), "{created}");
    assert!(db.dir.join("0002_add_index.down.sql").exists());
    assert!(fails(db.migrate(&["new", "Bad Name"])).contains("names use"));
}

#[tokio::test]
async fn the_repository_migrations_apply_and_revert_cleanly() {
    let db = Db::new(&[]).await;
    let dir = crate::support::repo_path("migrations");
    ok(migrate_cmd(&db.url, &dir, &["up"]).output().expect("up"));
    assert!(db.tables().await.contains(&"image_evts".to_owned()));
    ok(migrate_cmd(&db.url, &dir, &["down", "--to", "0", "--yes"]).output().expect("down"));
    assert_eq!(db.tables().await, vec!["schema_migrations"]);
}

#[tokio::test]
async fn down_is_refused_unless_confirmed_with_yes_or_the_database_name() {
    let db = Db::new(&[A, A_DOWN, B, B_DOWN]).await;
    ok(db.migrate(&["up"]));
    for args in [
        &["down"][..],
        &["down", "--to", "0"],
        &["down", "--database", "not_this_one"],
        &["down", "--yes", "--database", "x"],
    ] {
        let o = db.migrate(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", out(&o));
        let said = out(&o);
        assert!(said.contains("nothing reverted"), "{args:?}: {said}");
        if args.len() == 1 {
            assert!(said.contains("--yes") && said.contains(&format!("--database {}", db.name)), "{said}");
        }
    }
    assert_eq!(db.tables().await, vec!["a", "b", "schema_migrations"], "nothing was reverted");
    // A dry run reverts nothing and needs no confirmation.
    assert!(ok(db.migrate(&["down", "--dry-run"])).contains("would revert 0002_b"));
    assert!(ok(db.migrate(&["down", "--database", &db.name])).contains("reverted 0002_b"));
    assert!(ok(db.migrate(&["down", "--yes"])).contains("reverted 0001_a"));
    assert_eq!(db.tables().await, vec!["schema_migrations"]);
}

/// `GET /init` cancelled half-way (here by the request timeout, as a client
/// going away would) leaves nothing dirty: the run goes on to its end.
/// 0002's `ALTER TABLE` is held back by a table lock of another session
/// until well after the request was answered 503.
#[tokio::test]
async fn an_init_cancelled_half_way_runs_to_its_end_and_leaves_nothing_dirty() {
    use stack::{Service, StackOptions};
    let stack =
        crate::support::start_with(StackOptions::test(&[Service::Events]).with_env("REQUEST_TIMEOUT_MS", "1000")).await;
    let url = stack.database_url.clone().expect("the events database");
    let name = url.rsplit('/').next().expect("a database name").to_owned();
    ok(migrate_cmd(&url, &crate::support::repo_path("migrations"), &["up", "--to", "1"]).output().expect("up --to 1"));
    // Nothing of 0002 yet.

    let mariadb = shared_mariadb().await.expect("mariadb");
    let holder = mariadb.clone().lock_owned().await;
    let lock = format!("USE `{name}`; LOCK TABLES image_evts READ; SELECT SLEEP(4); UNLOCK TABLES;");
    let held = tokio::task::spawn_blocking(move || holder.root_sql(&lock));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let dir = crate::support::repo_path("migrations");
    let r = stack.client.get(&stack.service(Service::Events).url("/init")).await.expect("init");
    crate::support::assert_error(&r, 503, "timeout");
    // Cancelled between 0002's dirty mark and its end.
    let status = ok(migrate_cmd(&url, &dir, &["status"]).output().expect("status"));
    assert!(status.lines().any(|l| l.starts_with("0002") && l.contains("DIRTY")), "{status}");
    held.await.expect("join").expect("the lock session");

    let sql = |q: &'static str| {
        let (mariadb, name) = (mariadb.clone(), name.clone());
        async move { mariadb.lock().await.root_sql(&format!("USE `{name}`; {q}")).expect("sql") }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let rows = sql("SELECT version, dirty FROM schema_migrations ORDER BY version").await;
        if rows.trim() == "1\t0\n2\t0" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "0002 not applied clean 15 s after the lock went: {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(sql("SHOW COLUMNS FROM image_evts LIKE 'event_id'").await.contains("event_id"));
    // The service answers within its 1 s request timeout or says 503
    // timeout; on a loaded machine a client retries, as any client would.
    let retry_until = std::time::Instant::now() + Duration::from_secs(15);
    let again = loop {
        let r = stack.client.get(&stack.service(Service::Events).url("/init")).await.expect("init again");
        if r.status.as_u16() != 503 || std::time::Instant::now() >= retry_until {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(again.status.as_u16(), 200, "{}", again.text());
    assert_eq!(again.json()["applied"], serde_json::json!([]), "{}", again.text());
}
