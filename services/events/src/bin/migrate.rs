//! `migrate`: the schema's only way in. Same runner as `GET /init`.

use events::migrate::{self, MigrateError, Migrator, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: migrate [--database-url URL] [--dir DIR] [--lock-timeout SECS] COMMAND
commands:
  up [--to VERSION] [--dry-run]     apply pending migrations (up to VERSION)
  down [--to VERSION] [--dry-run] (--yes | --database NAME)
                                    revert the latest migration (or all above VERSION);
                                    it drops what they created, so it asks for --yes or
                                    the name of the URL's database (not with --dry-run)
  status                            print every migration and its state
  verify                            exit 1 if any migration is dirty, drifted or missing
  new NAME                          create the next NNNN_NAME.up.sql / .down.sql pair
  force VERSION [--pending]         after a manual repair: mark VERSION applied (or pending)
DATABASE_URL is read when --database-url is absent; without either, the secret DB_URL_SECRET
(default DB_URL:MYSQL) from SECRETS_FILE, the Dapr local-file secret store's JSON that
events-service reads (so a container gets the URL as a file, not in its environment);
--dir defaults to ./migrations.";

struct Args {
    url: Option<String>,
    dir: PathBuf,
    lock_timeout: Duration,
    command: String,
    positional: Vec<String>,
    to: Option<u64>,
    dry_run: bool,
    pending: bool,
    /// `--yes`: `down` confirmed.
    yes: bool,
    /// `--database NAME`: `down` confirmed by naming the URL's database.
    database: Option<String>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        url: std::env::var("DATABASE_URL").ok().filter(|v| !v.is_empty()),
        dir: PathBuf::from("migrations"),
        lock_timeout: Duration::from_secs(30),
        command: String::new(),
        positional: Vec::new(),
        to: None,
        dry_run: false,
        pending: false,
        yes: false,
        database: None,
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--database-url" => a.url = Some(value("--database-url")?),
            "--dir" => a.dir = PathBuf::from(value("--dir")?),
            "--lock-timeout" => {
                let secs = value("--lock-timeout")?.parse().map_err(|_| "--lock-timeout takes seconds")?;
                a.lock_timeout = Duration::from_secs(secs);
            }
            "--to" => a.to = Some(value("--to")?.parse().map_err(|_| "--to takes a version number")?),
            "--dry-run" => a.dry_run = true,
            "--pending" => a.pending = true,
            "--yes" => a.yes = true,
            "--database" => a.database = Some(value("--database")?),
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if a.command.is_empty() => a.command = s.to_owned(),
            s => a.positional.push(s.to_owned()),
        }
    }
    if a.command.is_empty() {
        return Err("no command".into());
    }
    if a.url.is_none() {
        if let Some(file) = std::env::var_os("SECRETS_FILE").filter(|v| !v.is_empty()) {
            let name =
                std::env::var("DB_URL_SECRET").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| "DB_URL:MYSQL".into());
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("SECRETS_FILE {}: {e}", PathBuf::from(&file).display()))?;
            a.url = Some(
                secret_from_json(&text, &name)
                    .map_err(|e| format!("SECRETS_FILE {}: {e}", PathBuf::from(&file).display()))?,
            );
        }
    }
    Ok(a)
}

/// `down` drops tables and their rows: it runs only when confirmed, by
/// `--yes` or by `--database` naming the database the URL points at (so a
/// URL meant for another database is caught). Refused before connecting.
fn confirm_down(yes: bool, named: Option<&str>, url_database: Option<&str>) -> Result<(), String> {
    let target = url_database.unwrap_or("(none in the URL)");
    match named {
        Some(name) if Some(name) == url_database => Ok(()),
        Some(name) => {
            Err(format!("--database {name} does not name the database the URL points at ({target}); nothing reverted"))
        }
        None if yes => Ok(()),
        None => Err(format!(
            "down reverts migrations and drops what they created, rows included, in database {target}: \
             confirm with --yes or --database {target} (or look first with --dry-run); nothing reverted"
        )),
    }
}

/// The secret `name` in a Dapr local-file secret store's JSON, nested with
/// `:` as components/secretstore.yaml sets (`DB_URL:MYSQL` is
/// `{"DB_URL":{"MYSQL":…}}`).
fn secret_from_json(text: &str, name: &str) -> Result<String, String> {
    let root: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let value = name.split(':').try_fold(&root, |v, key| v.get(key)).ok_or_else(|| format!("no secret {name}"))?;
    value
        .as_str()
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| format!("secret {name} is not a non-empty string"))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("migrate: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match kit::tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("migrate: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("migrate: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<ExitCode, MigrateError> {
    let migrations = migrate::from_dir(&args.dir)?;
    if args.command == "new" {
        let name = args.positional.first().map(String::as_str).unwrap_or_default();
        let (up, down) = migrate::new_file_names(&migrations, name)?;
        for (file, text) in [(&up, "-- Write the change here.\n"), (&down, "-- Undo the up script here.\n")] {
            let path = args.dir.join(file);
            std::fs::write(&path, text)
                .map_err(|source| MigrateError::Io { dir: args.dir.display().to_string(), source })?;
            println!("created {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(url) = args.url.as_deref() else {
        eprintln!("migrate: give --database-url or set DATABASE_URL");
        return Ok(ExitCode::from(2));
    };
    let opts = mysql_async::Opts::from_url(url)
        .map_err(|e| MigrateError::BadFile { file: "--database-url".into(), reason: e.to_string() })?;
    if args.command == "down" && !args.dry_run {
        if let Err(refusal) = confirm_down(args.yes, args.database.as_deref(), opts.db_name()) {
            eprintln!("migrate: {refusal}");
            return Ok(ExitCode::from(2));
        }
    }
    let pool = mysql_async::Pool::new(opts);
    let mut conn = pool.get_conn().await?;
    let migrator = Migrator::new(migrations).with_lock_timeout(args.lock_timeout);
    let opts = RunOptions { to: args.to, dry_run: args.dry_run };
    let code = match args.command.as_str() {
        "up" | "down" => {
            let report = if args.command == "up" {
                migrator.up(&mut conn, opts).await?
            } else {
                migrator.down(&mut conn, opts).await?
            };
            let verb = match (args.command.as_str(), report.dry_run) {
                ("up", false) => "applied",
                ("up", true) => "would apply",
                (_, false) => "reverted",
                (_, true) => "would revert",
            };
            if report.steps.is_empty() {
                println!("nothing to do");
            }
            for (version, name, ms) in &report.steps {
                if report.dry_run {
                    println!("{verb} {version:04}_{name}");
                } else {
                    println!("{verb} {version:04}_{name} in {ms} ms");
                }
            }
            ExitCode::SUCCESS
        }
        "status" => {
            print!("{}", migrate::render_status(&migrator.status(&mut conn).await?));
            ExitCode::SUCCESS
        }
        "verify" => {
            let problems = migrator.verify(&mut conn).await?;
            for p in &problems {
                println!("{p}");
            }
            if problems.is_empty() {
                println!("ok: {} migrations, no drift, nothing dirty", migrator.migrations().len());
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        "force" => {
            let version =
                args.positional.first().and_then(|v| v.parse().ok()).ok_or(MigrateError::UnknownVersion(0))?;
            migrator.force(&mut conn, version, !args.pending).await?;
            println!("migration {version:04} marked {}", if args.pending { "pending" } else { "applied" });
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("migrate: unknown command {other}\n{USAGE}");
            ExitCode::from(2)
        }
    };
    drop(conn);
    let _ = pool.disconnect().await;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::{confirm_down, secret_from_json};

    #[test]
    fn down_needs_yes_or_the_database_name() {
        let refused = confirm_down(false, None, Some("events")).expect_err("unconfirmed");
        assert!(refused.contains("--yes") && refused.contains("--database events"), "{refused}");
        assert!(confirm_down(true, None, Some("events")).is_ok());
        assert!(confirm_down(false, Some("events"), Some("events")).is_ok());
        let wrong = confirm_down(true, Some("other"), Some("events")).expect_err("another database");
        assert!(wrong.contains("does not name"), "{wrong}");
        assert!(confirm_down(false, Some("events"), None).is_err(), "a URL without a database");
    }

    #[test]
    fn reads_a_nested_secret_as_the_secret_store_does() {
        let json = r#"{"DB_URL":{"MYSQL":"mysql://u:p@db:3306/events"},"OTHER":"x"}"#;
        assert_eq!(secret_from_json(json, "DB_URL:MYSQL").as_deref(), Ok("mysql://u:p@db:3306/events"));
        assert_eq!(secret_from_json(json, "OTHER").as_deref(), Ok("x"));
    }

    #[test]
    fn refuses_a_missing_empty_or_non_string_secret() {
        let json = r#"{"DB_URL":{"MYSQL":"","PG":{"x":1}}}"#;
        assert!(secret_from_json(json, "DB_URL:MYSQL").is_err());
        assert!(secret_from_json(json, "DB_URL:PG").is_err());
        assert!(secret_from_json(json, "DB_URL:NOPE").is_err());
        assert!(secret_from_json("not json", "DB_URL:MYSQL").is_err());
    }
}
