//! The `sipban` binary: arguments, logging, signals. Everything else is in
//! the library so tests drive it directly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Arg, ArgAction, ArgMatches, FromArgMatches, Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};

use sipban::client::{self, ClientError, Outcome};
use sipban::clock::Clock;
use sipban::config::{Config, Loaded};
use sipban::daemon::{Daemon, PolicySettings, Settings, build_backend, resolve_ami_host};
use sipban::policy::{Policy, Whitelist};

const DEFAULT_CONFIG: &str = "/etc/sipban.conf";

const CLIENT_HELP: &str = "\
Console commands (status, check, block, ...) are sent to the running
daemon's console ([control] address/port of the config, or --console) and
the reply is printed. Exit status: 0 answered, 1 the console answered with
an error (printed on stderr), 2 usage error, 3 the console could not be
reached (or timed out, or closed the connection).";

/// Bans SIP brute-force attackers reported by Asterisk's AMI security events.
#[derive(Parser, Debug)]
#[command(name = "sipban", version, about, after_help = CLIENT_HELP)]
// `help` is the console's command; `--help` stays.
#[command(disable_help_subcommand = true)]
struct Cli {
    /// Configuration file (the original SIPban's format).
    #[arg(short = 'c', long = "config", value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    /// Also log to standard error.
    #[arg(long, global = true)]
    foreground: bool,
    /// Validate the config and list files, print the effective settings, exit.
    #[arg(long, global = true)]
    check_config: bool,
    /// Do everything but touch the firewall: log what would be done.
    #[arg(long, global = true)]
    dry_run: bool,
    /// Log debug detail (AMI traffic summaries, extended bans).
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Console address for the client commands, instead of the config's
    /// `[control] address` and `port`.
    #[arg(long, value_name = "ADDR:PORT", global = true)]
    console: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

impl Cli {
    /// Global options work after the subcommand too (`sipban replay FILE -c
    /// PATH`); clap handles that, except after a console command's
    /// arguments, which are passed on as typed. There, trailing `-c PATH`,
    /// `--config PATH`, `--config=PATH` and `--console ADDR` are ours (no
    /// console command takes them); the rightmost one given wins, as
    /// clap's own repeats do.
    fn take_trailing_options(&mut self) -> Result<(), clap::Error> {
        let Some(Cmd::Remote(remote)) = &mut self.command else {
            return Ok(());
        };
        let (mut config, mut console) = (None, None);
        loop {
            let (option, value, used) = match remote.args.as_slice() {
                [.., opt, value] if matches!(opt.as_str(), "-c" | "--config" | "--console") => {
                    (opt.clone(), value.clone(), 2)
                }
                [.., last] => match last.split_once('=') {
                    Some((opt @ ("--config" | "--console"), value)) => {
                        (opt.to_string(), value.to_string(), 1)
                    }
                    _ => break,
                },
                [] => break,
            };
            remote.args.truncate(remote.args.len().saturating_sub(used));
            if option == "--console" {
                console.get_or_insert(value);
            } else {
                config.get_or_insert(value);
            }
        }
        if let Some(path) = config {
            self.config = Some(PathBuf::from(path));
        }
        if let Some(addr) = console {
            let parsed = addr.parse::<SocketAddr>().map_err(|e| {
                <Cli as clap::CommandFactory>::command().error(
                    clap::error::ErrorKind::ValueValidation,
                    format!("invalid value '{addr}' for '--console <ADDR:PORT>': {e}"),
                )
            })?;
            self.console = Some(parsed);
        }
        Ok(())
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Replay a recorded AMI stream and/or a packet capture (pcap, pcapng)
    /// through the real codec, SIP sensor and ban logic (dry run) and print
    /// what would be banned and why. Given a capture and the AMI stream
    /// recorded with it, both go to the policy together, in time order.
    Replay {
        /// Raw AMI bytes as captured from the manager port, or a capture of
        /// the SIP traffic (told apart by their first bytes).
        #[arg(num_args = 1..=2, required = true)]
        files: Vec<PathBuf>,
    },
    /// Interactive console session: history, tab completion of commands and
    /// banned addresses, Ctrl-D to leave. Runs the commands read from
    /// standard input when it is not a terminal.
    Console,
    #[command(flatten)]
    Remote(RemoteCmd),
}

/// A console command run once (`sipban block 203.0.113.5`): one subcommand
/// per name in [`client::COMMANDS`], its arguments passed on as typed.
#[derive(Debug)]
struct RemoteCmd {
    name: String,
    args: Vec<String>,
}

impl RemoteCmd {
    /// The console line: name and arguments joined by spaces.
    fn line(&self) -> String {
        std::iter::once(&self.name)
            .chain(&self.args)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl FromArgMatches for RemoteCmd {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let Some((name, sub)) = matches.subcommand() else {
            return Err(clap::Error::new(clap::error::ErrorKind::MissingSubcommand));
        };
        if client::command_spec(name).is_none() {
            return Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand));
        }
        let args = sub
            .get_many::<String>("args")
            .map(|values| values.cloned().collect())
            .unwrap_or_default();
        Ok(RemoteCmd {
            name: name.to_string(),
            args,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Subcommand for RemoteCmd {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        client::COMMANDS.iter().fold(cmd, |cmd, c| {
            // Passed on as typed (`status --all` too); the console checks them.
            let args = Arg::new("args")
                .action(ArgAction::Append)
                .num_args(0..)
                .trailing_var_arg(true)
                .allow_hyphen_values(true)
                .hide(true);
            let usage = format!("sipban [OPTIONS] {} {}", c.name, c.usage);
            cmd.subcommand(
                clap::Command::new(c.name)
                    .about(c.about)
                    .override_usage(usage.trim_end().to_string())
                    .arg(args),
            )
        })
    }

    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_subcommands(cmd)
    }

    fn has_subcommand(name: &str) -> bool {
        client::command_spec(name).is_some()
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let mut cli = Cli::parse();
    if let Err(e) = cli.take_trailing_options() {
        e.exit();
    }
    match run(cli) {
        Ok(code) => code,
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

fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Some(Cmd::Remote(remote)) => {
            let addr = console_addr(&cli)?;
            let line = remote.line();
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            return Ok(client_exit(client::run_one(
                addr, &line, &mut out, &mut err,
            )));
        }
        Some(Cmd::Console) => return Ok(client_exit(client::run_console(console_addr(&cli)?))),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match &cli.command {
        Some(Cmd::Replay { files }) => runtime.block_on(replay(&cli, files)),
        Some(Cmd::Console | Cmd::Remote(_)) => unreachable!("handled above"),
        None if cli.check_config => check_config(&cli),
        None => runtime.block_on(daemon(&cli)),
    }?;
    Ok(ExitCode::SUCCESS)
}

/// The console for the client commands: `--console`, else the config's
/// `[control]` (defaults when the default config is missing).
fn console_addr(cli: &Cli) -> Result<client::ConsoleTarget> {
    if let Some(addr) = cli.console {
        // The secret then comes from the environment only.
        return Ok(client::ConsoleTarget::from(addr));
    }
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let (target, warning) = client::console_target_from_config(&path, cli.config.is_some())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    Ok(target)
}

/// Exit status of a client command (see [`client`]'s module docs).
fn client_exit(result: Result<Outcome, ClientError>) -> ExitCode {
    match result {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(e) => {
            eprintln!("sipban: {e}");
            ExitCode::from(client::EXIT_NO_CONSOLE)
        }
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

/// `--check-config`: loads everything the daemon loads at start, prints
/// every warning (unknown keys, a readable config holding secrets, list
/// lines with host bits or repeats) on stderr and the effective settings on
/// stdout.
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
    let lists = sipban::policy::lists::Lists::load(&c.lists.allow, &c.lists.deny)?;
    // The white list is the allow list unless [lists] allow names another.
    if c.iptables.white_list != c.lists.allow {
        for w in wl.warnings() {
            eprintln!("warning: {w}");
        }
    }
    for w in &lists.warnings {
        eprintln!("warning: {w}");
    }
    // Start-up refuses a dump it cannot write; so does the check. Bad
    // entries are skipped at start (and named there): warnings here.
    sipban::bans::persist::check_writable(&c.iptables.dump)?;
    if let Some(dump) = sipban::bans::persist::read_dump(&c.iptables.dump)? {
        for w in &dump.warnings {
            eprintln!("warning: {w}; this entry would be skipped at start");
        }
    }
    if let Some(src) = &c.source {
        println!("# effective settings of {}", src.display());
    }
    print!("{c}");
    println!("# white list: {} entries", wl.entries().len());
    println!("# deny list: {} entries", lists.lists.deny.len());
    println!("# config OK");
    Ok(())
}

async fn replay(cli: &Cli, files: &[PathBuf]) -> Result<()> {
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
    // A capture is told by its first bytes and read by the sensor as it
    // goes; only an AMI stream is read whole here.
    let mut ami: Option<Vec<u8>> = None;
    let mut capture: Option<&PathBuf> = None;
    for file in files {
        let cannot = || format!("cannot read {}", file.display());
        let mut head = [0u8; 4];
        let n = std::io::Read::read(
            &mut std::fs::File::open(file).with_context(cannot)?,
            &mut head,
        )
        .with_context(cannot)?;
        let twice = if sipban::replay::is_packet_capture(head.get(..n).unwrap_or_default()) {
            capture.replace(file).map(|_| "packet captures")
        } else {
            let bytes = std::fs::read(file).with_context(cannot)?;
            ami.replace(bytes).map(|_| "AMI streams")
        };
        if let Some(what) = twice {
            anyhow::bail!(
                "two {what} given ({}): replay takes one AMI stream and one packet capture",
                file.display()
            );
        }
    }
    let hosts = resolve_ami_host(&c.ami.host, c.ami.port).await;
    // With a config, its [policy] and [lists] apply: test a config against
    // recorded traffic.
    let policy = if cli.config.is_some() {
        let lists = sipban::policy::lists::Lists::load(&c.lists.allow, &c.lists.deny)?;
        Policy::with(lists.lists, hosts, c.policy.clone())?
    } else {
        Policy::new(wl, hosts, c.ban_time)
    };
    let capture = capture.map(|path| sipban::replay::CaptureInput {
        path,
        // The config's [sip] windows and agents, whether or not it enables
        // the live sensor: a replay tests them.
        signals: c.sip.signals.clone(),
        tls_ports: c.sip.tls_ports.clone(),
    });
    let report = sipban::replay::replay_all(ami.as_deref(), capture, &policy, c.ban_time).await?;
    print!("{report}");
    Ok(())
}

async fn daemon(cli: &Cli) -> Result<()> {
    let loaded = load_config(cli, false)?;
    let c = loaded.config;
    let (wl, warning) = load_whitelist(&c.iptables.white_list)?;
    let _log = sipban::logging::init(Some(&c.log_file), cli.foreground, cli.verbose)?;
    log_panics();
    for w in loaded.warnings.iter().chain(warning.iter()) {
        tracing::warn!("{w}");
    }
    let hosts = resolve_ami_host(&c.ami.host, c.ami.port).await;
    let backend = build_backend(&c, cli.dry_run);
    let settings = Settings::from_config(&c, wl, hosts);
    let policy = PolicySettings::from_config(&c);
    let daemon = match Daemon::start_with(settings, backend, Clock::system(), Some(policy)).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("start failed: {e}");
            return Err(e.into());
        }
    };
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut failed = false;
    loop {
        tokio::select! {
            _ = daemon.failed() => {
                failed = true;
                break;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                if let Err(e) = daemon.reload_lists() {
                    tracing::error!("LISTS => reload failed, old lists kept: {e}");
                }
            }
        }
    }
    if failed {
        // The crash path: never clear the firewall (see Daemon::stop_after_failure).
        let _ = tokio::time::timeout(Duration::from_secs(25), daemon.stop_after_failure()).await;
        bail!(
            "an internal task stopped unexpectedly; exiting so the service manager restarts sipban"
        );
    }
    tracing::info!("SIGNAL => stopping");
    // A stuck firewall tool must not keep systemd waiting forever.
    match tokio::time::timeout(Duration::from_secs(25), daemon.stop()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(anyhow::anyhow!(
            "{e}; the firewall was left as it is for the next start"
        )),
        Err(_) => bail!("shutdown timed out"),
    }
}

/// A panic anywhere is logged (with where) before the task or thread dies;
/// the daemon then takes the crash path, which leaves the firewall alone.
fn log_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("PANIC => {info}");
        default(info);
    }));
}
