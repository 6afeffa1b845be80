//! The `sipban` binary: arguments, logging, signals. Everything else is in
//! the library so tests drive it directly.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};

use sipban::clock::Clock;
use sipban::config::{Config, Loaded};
use sipban::daemon::{Daemon, Settings, build_backend, resolve_ami_host};
use sipban::policy::{Policy, Whitelist};

const DEFAULT_CONFIG: &str = "/etc/sipban.conf";

/// Bans SIP brute-force attackers reported by Asterisk's AMI security events.
#[derive(Parser, Debug)]
#[command(name = "sipban", version, about)]
struct Cli {
    /// Configuration file (the original SIPban's format).
    #[arg(short = 'c', long = "config", value_name = "PATH")]
    config: Option<PathBuf>,
    /// Also log to standard error.
    #[arg(long)]
    foreground: bool,
    /// Validate the config and list files, print the effective settings, exit.
    #[arg(long)]
    check_config: bool,
    /// Do everything but touch the firewall: log what would be done.
    #[arg(long)]
    dry_run: bool,
    /// Log debug detail (AMI traffic summaries, extended bans).
    #[arg(short, long)]
    verbose: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Replay a recorded AMI stream through the real codec and ban logic
    /// (dry run) and print what would be banned and why.
    Replay {
        /// Raw AMI bytes, as captured from the manager port.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipban: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc gives each thread that allocates its own arena; after a storm the
/// freed memory stays spread over them. Two arenas keep RSS close to the
/// live data (100k bans in well under 20 MB).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match &cli.command {
        Some(Cmd::Replay { file }) => runtime.block_on(replay(&cli, file)),
        None if cli.check_config => check_config(&cli),
        None => runtime.block_on(daemon(&cli)),
    }
}

/// Loads the config; without `-c`, a missing default file means defaults
/// (only for `replay`, which needs no Asterisk).
fn load_config(cli: &Cli, defaults_if_missing: bool) -> Result<Loaded> {
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    if cli.config.is_none() && defaults_if_missing && !path.exists() {
        return Ok(Loaded {
            config: Config::default(),
            warnings: vec![format!(
                "{DEFAULT_CONFIG} not found: using built-in defaults"
            )],
        });
    }
    Ok(Config::load(&path)?)
}

fn load_whitelist(path: &Path) -> Result<(Whitelist, Option<String>)> {
    let (wl, found) = Whitelist::load(path)?;
    let warning = (!found).then(|| {
        format!(
            "white list {} not found: only loopback and the AMI host are protected",
            path.display()
        )
    });
    Ok((wl, warning))
}

fn check_config(cli: &Cli) -> Result<()> {
    let loaded = load_config(cli, false)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let c = &loaded.config;
    let (wl, warning) = load_whitelist(&c.iptables.white_list)?;
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    if let Some(Err(e)) = sipban::bans::persist::read(&c.iptables.dump).transpose() {
        bail!(e);
    }
    if let Some(src) = &c.source {
        println!("# effective settings of {}", src.display());
    }
    print!("{c}");
    println!("# white list: {} entries", wl.entries().len());
    println!("# config OK");
    Ok(())
}

async fn replay(cli: &Cli, file: &Path) -> Result<()> {
    let loaded = load_config(cli, true)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let c = &loaded.config;
    let (wl, warning) = if cli.config.is_some() {
        load_whitelist(&c.iptables.white_list)?
    } else {
        (Whitelist::default(), None)
    };
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let hosts = resolve_ami_host(&c.ami.host, c.ami.port).await;
    let policy = Policy::new(wl, hosts);
    let report = sipban::replay::replay(&bytes, &policy, c.ban_time).await?;
    print!("{report}");
    Ok(())
}

async fn daemon(cli: &Cli) -> Result<()> {
    let loaded = load_config(cli, false)?;
    let c = loaded.config;
    let (wl, warning) = load_whitelist(&c.iptables.white_list)?;
    let _log = sipban::logging::init(Some(&c.log_file), cli.foreground, cli.verbose)?;
    for w in loaded.warnings.iter().chain(warning.iter()) {
        tracing::warn!("{w}");
    }
    let hosts = resolve_ami_host(&c.ami.host, c.ami.port).await;
    let backend = build_backend(&c, cli.dry_run);
    let settings = Settings::from_config(&c, wl, hosts);
    let daemon = match Daemon::start(settings, backend, Clock::system()).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("start failed: {e}");
            return Err(e.into());
        }
    };
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut failure = None;
    loop {
        tokio::select! {
            _ = daemon.failed() => {
                failure = Some("an internal task stopped unexpectedly");
                break;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                if let Err(e) = daemon.reload_whitelist() {
                    tracing::error!("WHITE LIST => reload failed, old list kept: {e}");
                }
            }
        }
    }
    if failure.is_none() {
        tracing::info!("SIGNAL => stopping");
    }
    // A stuck firewall tool must not keep systemd waiting forever.
    match tokio::time::timeout(Duration::from_secs(25), daemon.stop()).await {
        Ok(Ok(())) => match failure {
            Some(why) => bail!("{why}; exiting so the service manager restarts sipban"),
            None => Ok(()),
        },
        Ok(Err(e)) => Err(e.into()),
        Err(_) => bail!("shutdown timed out"),
    }
}
