//! Wiring: AMI events -> policy -> ban store -> firewall applier, plus the
//! expiry task, the dump writer and the console. The binary and the tests
//! both start the daemon through [`Daemon::start`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ami::{self, AmiHandle, AmiSettings, Backoff};
use crate::bans::{BanManager, DumpError};
use crate::clock::Clock;
use crate::config::{BackendKind, Config};
use crate::console::{self, ConsoleContext};
use crate::event::SecurityEvent;
use crate::firewall::chain::ChainSettings;
use crate::firewall::exec::tool;
use crate::firewall::{
    ApplierOptions, Backend, ChainBackend, DryRun, Firewall, FirewallError, Hook, IpsetBackend,
    NftBackend, SetSettings,
};
use crate::policy::detector::DetectorConfig;
use crate::policy::lists::{AddressList, Lists};
use crate::policy::{Policy, Verdict, Whitelist};

/// Everything the daemon needs, already validated.
#[derive(Clone, Debug)]
pub struct Settings {
    pub ami: AmiSettings,
    pub console: SocketAddr,
    /// `login SECRET` required before console commands.
    pub console_secret: Option<crate::ami::Secret>,
    /// Idle console sessions are closed after this.
    pub console_idle: Duration,
    /// The only directory console imports may read from.
    pub import_dir: Option<PathBuf>,
    pub ban_time: Duration,
    pub dump: Option<PathBuf>,
    pub whitelist: Whitelist,
    /// Re-read on SIGHUP.
    pub whitelist_path: Option<PathBuf>,
    /// Addresses of the AMI host: never banned.
    pub ami_hosts: Vec<IpAddr>,
    pub chain: String,
    /// Drift check period; `None` disables.
    pub firewall_check: Option<Duration>,
    /// `conntrack` tool for deleting a new ban's flows; `None` disables.
    pub conntrack: Option<String>,
}

impl Settings {
    pub fn from_config(c: &Config, whitelist: Whitelist, ami_hosts: Vec<IpAddr>) -> Settings {
        Settings {
            ami: AmiSettings {
                host: c.ami.host.clone(),
                port: c.ami.port,
                username: c.ami.user.clone(),
                secret: c.ami.secret.clone(),
                ping_interval: c.ami.ping,
                reply_timeout: Duration::from_secs(10),
                backoff: Backoff::default(),
            },
            console: SocketAddr::new(c.control.address, c.control.port),
            console_secret: c.control.secret.clone(),
            console_idle: c.control.idle_timeout,
            import_dir: c.control.import_dir.clone(),
            ban_time: c.ban_time,
            dump: Some(c.iptables.dump.clone()),
            whitelist,
            whitelist_path: Some(c.iptables.white_list.clone()),
            ami_hosts,
            chain: c.iptables.chain.clone(),
            firewall_check: c.firewall.check_interval,
            conntrack: c
                .firewall
                .conntrack
                .then(|| tool(&c.iptables.path, "conntrack")),
        }
    }
}

/// The backend `[firewall] backend` asks for (`auto`: nftables if `nft`
/// works, else ipset, else chain); the dry-run one with `--dry-run`.
pub fn build_backend(c: &Config, dry_run: bool) -> Box<dyn Backend> {
    if dry_run {
        return Box::new(DryRun::new());
    }
    let dir = &c.iptables.path;
    let kind = match c.firewall.backend {
        BackendKind::Auto if NftBackend::available(dir) => BackendKind::Nftables,
        BackendKind::Auto if IpsetBackend::available(dir) => BackendKind::Ipset,
        BackendKind::Auto => BackendKind::Chain,
        k => k,
    };
    tracing::info!(
        "FIREWALL => {kind} backend ([firewall] backend = {})",
        c.firewall.backend
    );
    let sets = SetSettings {
        bin_dir: dir.clone(),
        table: c.firewall.table.clone(),
        set4: c.firewall.set4.clone(),
        set6: c.firewall.set6.clone(),
        scope: c.iptables.scope.clone(),
        action4: c.iptables.rule.clone(),
        action6: c.iptables.rule6.clone(),
        hook: c.firewall.hook,
        mode: c.firewall.mode,
        deny4: c.firewall.deny4.clone(),
        deny6: c.firewall.deny6.clone(),
    };
    if kind != BackendKind::Chain
        && c.firewall.hook == Hook::Raw
        && c.iptables.rule != crate::firewall::Action::Drop
    {
        tracing::info!(
            "FIREWALL => rule {} applies as DROP before conntrack (hook = raw); set [firewall] hook = filter to REJECT",
            c.iptables.rule
        );
    }
    match kind {
        BackendKind::Nftables => Box::new(NftBackend::new(sets)),
        BackendKind::Ipset => Box::new(IpsetBackend::new(sets)),
        _ => Box::new(ChainBackend::new(ChainSettings {
            path: dir.clone(),
            chain: c.iptables.chain.clone(),
            scope: c.iptables.scope.clone(),
            action_v4: c.iptables.rule.clone(),
            action_v6: c.iptables.rule6.clone(),
        })),
    }
}

/// The detection policy and list files (`[policy]`, `[lists]`). Without
/// it, [`Daemon::start`] runs the original's policy on `Settings::whitelist`.
#[derive(Clone, Debug)]
pub struct PolicySettings {
    pub detector: DetectorConfig,
    pub allow: PathBuf,
    pub deny: PathBuf,
}

impl PolicySettings {
    pub fn from_config(c: &Config) -> PolicySettings {
        PolicySettings {
            detector: c.policy.clone(),
            allow: c.lists.allow.clone(),
            deny: c.lists.deny.clone(),
        }
    }
}

#[derive(Debug, Error)]
pub enum StartError {
    #[error("lists: {0}")]
    Lists(#[from] crate::policy::lists::ListError),
    #[error("[policy] {0}")]
    Policy(#[from] crate::policy::detector::InvalidSetting),
    #[error("firewall: {0}")]
    Firewall(#[from] FirewallError),
    #[error("dump: {0}")]
    Dump(#[from] DumpError),
    #[error("cannot listen on {addr} for the console: {source}")]
    Console {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub struct Daemon {
    pub bans: Arc<BanManager>,
    /// Cancelled when a core task ends on its own (a bug): the binary then
    /// exits non-zero so the service manager restarts it, rather than
    /// running deaf.
    died: CancellationToken,
    pub policy: Arc<Policy>,
    pub ami: AmiHandle,
    pub console_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    whitelist_path: Option<PathBuf>,
    /// Allow and deny files, when started with a [`PolicySettings`].
    policy_files: Option<(PathBuf, PathBuf)>,
}

/// Resolves the AMI host so its addresses can be protected from bans.
pub async fn resolve_ami_host(host: &str, port: u16) -> Vec<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => addrs.map(|a| a.ip()).collect(),
        Err(e) => {
            tracing::warn!("cannot resolve AMI host {host}: {e}; it is not protected by address");
            Vec::new()
        }
    }
}

impl Daemon {
    pub async fn start(
        settings: Settings,
        backend: Box<dyn Backend>,
        clock: Clock,
    ) -> Result<Daemon, StartError> {
        Self::start_with(settings, backend, clock, None).await
    }

    /// Starts with the detection policy and list files of `policy`.
    pub async fn start_with(
        settings: Settings,
        backend: Box<dyn Backend>,
        clock: Clock,
        policy_settings: Option<PolicySettings>,
    ) -> Result<Daemon, StartError> {
        tracing::info!("SipBan Start");
        let policy_obj = match &policy_settings {
            None => Policy::new(
                settings.whitelist.clone(),
                settings.ami_hosts.clone(),
                settings.ban_time,
            ),
            Some(ps) => {
                let loaded = Lists::load(&ps.allow, &ps.deny)?;
                for path in &loaded.missing {
                    tracing::warn!("LISTS => {} not found: empty list", path.display());
                }
                for w in &loaded.warnings {
                    tracing::warn!("LISTS => {w}");
                }
                Policy::with(
                    loaded.lists,
                    settings.ami_hosts.clone(),
                    ps.detector.clone(),
                )?
            }
        };
        let lists = policy_obj.lists();
        for e in lists.allow.entries() {
            tracing::info!("WHITE LIST => {}", e.net);
        }
        if !lists.deny.is_empty() {
            tracing::info!("DENY LIST => {} entries", lists.deny.len());
        }
        if let Some(dump) = &settings.dump {
            crate::bans::persist::check_writable(dump)?;
        }
        let listener = TcpListener::bind(settings.console)
            .await
            .map_err(|source| StartError::Console {
                addr: settings.console,
                source,
            })?;
        let console_addr = listener
            .local_addr()
            .map_err(|source| StartError::Console {
                addr: settings.console,
                source,
            })?;
        let firewall = Firewall::start_with(
            backend,
            ApplierOptions {
                conntrack: settings.conntrack.clone(),
            },
        )
        .await?;
        let bans = BanManager::new(firewall, clock, settings.ban_time, settings.dump.clone());
        let policy = Arc::new(policy_obj);
        {
            let p = Arc::clone(&policy);
            bans.set_history_provider(Box::new(move || {
                if p.is_original() {
                    return None;
                }
                // Copied under the detector's lock, written into the dump
                // after it, without a string of it in between.
                let history = p.detector().history();
                Some(Box::new(move |w: &mut dyn std::io::Write| {
                    serde_json::to_writer(w, &history).map_err(std::io::Error::other)
                }))
            }));
        }
        let stats = Arc::new(crate::stats::Stats::default());
        {
            // A ban counts in the report once it is confirmed.
            let (stats, clock) = (Arc::clone(&stats), bans.clock().clone());
            bans.set_confirm_hook(Box::new(move |_| stats.ban(clock.now_ms())));
        }
        restore_at_start(&bans, &policy).await;
        enforce_deny_list(&bans, &policy).await;

        let shutdown = CancellationToken::new();
        let died = CancellationToken::new();
        let watch = |name| Watch {
            name,
            shutdown: shutdown.clone(),
            died: died.clone(),
        };
        let mut tasks = vec![
            watch("expiry").spawn(Arc::clone(&bans).run_expiry(shutdown.clone())),
            watch("dump writer").spawn(Arc::clone(&bans).run_dump_writer(shutdown.clone())),
        ];

        {
            // The applier thread ending before shutdown (it died) is a
            // failure like any core task's.
            let (fw, stop) = (bans.firewall().clone(), shutdown.clone());
            tasks.push(watch("firewall applier").spawn(async move {
                tokio::select! {
                    _ = fw.closed() => {}
                    _ = stop.cancelled() => {}
                }
            }));
        }

        if let Some(every) = settings.firewall_check {
            tasks.push(
                watch("firewall check")
                    .spawn(Arc::clone(&bans).run_firewall_check(every, shutdown.clone())),
            );
        }

        // Small: the AMI reader waits (TCP holds the rest) rather than
        // buffering a whole storm in memory.
        let (events_tx, events_rx) = mpsc::channel(1024);
        let (ami, ami_task) = ami::client::spawn(settings.ami.clone(), events_tx, shutdown.clone());
        tasks.push(watch("AMI client").spawn(async move {
            if let Err(e) = ami_task.await {
                tracing::error!("AMI client failed: {e}");
            }
        }));
        let deny_path = policy_settings.as_ref().map(|p| p.deny.clone());
        tasks.push(watch("event judge").spawn(judge_events(
            events_rx,
            Arc::clone(&policy),
            Arc::clone(&bans),
            deny_path.clone(),
            Arc::clone(&stats),
        )));
        tasks.push(watch("detector purge").spawn(purge_detector(
            Arc::clone(&policy),
            bans.clock().clone(),
            shutdown.clone(),
        )));

        let ctx = Arc::new(ConsoleContext {
            bans: Arc::clone(&bans),
            policy: Arc::clone(&policy),
            ami: Some(ami.clone()),
            chain: settings.chain.clone(),
            started: Instant::now(),
            list_files: policy_settings
                .as_ref()
                .map(|p| (p.allow.clone(), p.deny.clone())),
            stats: Arc::clone(&stats),
            secret: settings.console_secret.clone(),
            idle_timeout: settings.console_idle,
            import_dir: settings.import_dir.clone(),
        });
        tasks.push(watch("console").spawn(console::serve(listener, ctx, shutdown.clone())));
        tracing::info!("CONSOLE => listening on {console_addr}");

        Ok(Daemon {
            bans,
            died,
            policy,
            ami,
            console_addr,
            shutdown,
            tasks,
            whitelist_path: settings.whitelist_path,
            policy_files: policy_settings.map(|p| (p.allow, p.deny)),
        })
    }

    /// Completes if a core task stopped on its own; see `died`.
    pub async fn failed(&self) {
        self.died.cancelled().await
    }

    /// Re-reads the allow (white) and deny lists; on error the old lists
    /// stay in force, whole. Returns the number of (allow, deny) entries.
    pub fn reload_lists(&self) -> Result<(usize, usize), crate::policy::lists::ListError> {
        let lists = match (&self.policy_files, &self.whitelist_path) {
            (Some((allow, deny)), _) => {
                let loaded = Lists::load(allow, deny)?;
                for w in &loaded.warnings {
                    tracing::warn!("LISTS => {w}");
                }
                loaded.lists
            }
            (None, Some(path)) => {
                let (allow, _) = AddressList::load_as(path, crate::policy::lists::ListKind::Allow)?;
                for w in allow.warnings() {
                    tracing::warn!("LISTS => {w}");
                }
                Lists {
                    allow,
                    deny: self.policy.lists().deny.clone(),
                }
            }
            (None, None) => return Ok(counts(&self.policy.lists())),
        };
        let n = counts(&lists);
        self.policy.set_lists(lists);
        tracing::info!("LISTS => reloaded: {} allow, {} deny entries", n.0, n.1);
        let (bans, policy) = (Arc::clone(&self.bans), Arc::clone(&self.policy));
        tokio::spawn(async move { enforce_deny_list(&bans, &policy).await });
        Ok(n)
    }

    /// Stops sources and console and writes the final dump; only once it
    /// is written are our firewall objects removed (the firewall is left as
    /// we found it). If the dump cannot be written (a full disk), the
    /// firewall is left as it is, with its timeouts, for the next start to
    /// take over: a failed stop never loses a ban.
    pub async fn stop(self) -> Result<(), DumpError> {
        let bans = self.halt().await;
        let dumped = bans.dump().await;
        match &dumped {
            Ok(n) => {
                if let Some(path) = bans.dump_path() {
                    tracing::info!("DUMP => {} ({n} bans)", path.display());
                }
                if let Err(e) = bans.firewall().shutdown().await {
                    tracing::error!("FIREWALL => cleanup incomplete: {e}");
                }
            }
            Err(e) => tracing::error!(
                "DUMP => {e}; the firewall is left as it is (its bans lapse on their kernel timeouts; the next start takes them over)"
            ),
        }
        tracing::info!("SipBan Stop");
        dumped.map(|_| ())
    }

    /// The crash path, after a core task died: the state is dumped if it can
    /// be, and the firewall is left exactly as it is for the next start to
    /// take over. Never clears a ban.
    pub async fn stop_after_failure(self) {
        let bans = self.halt().await;
        match bans.dump().await {
            Ok(n) => {
                if let Some(path) = bans.dump_path() {
                    tracing::info!("DUMP => {} ({n} bans)", path.display());
                }
            }
            Err(e) => tracing::error!("DUMP => {e}"),
        }
        tracing::error!(
            "SipBan Stop after a failure: the firewall is left as it is; the next start takes it over"
        );
    }

    /// Stops every task; the bans and the firewall stay as they are.
    async fn halt(self) -> Arc<BanManager> {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.bans
    }
}

/// Restores at start: the dump, its journal and what a crashed run left in
/// the kernel (bans), and the detector's history. Entries that cannot be
/// read are skipped and named; the dump they came from is copied aside
/// (it is about to be rewritten) for inspection.
async fn restore_at_start(bans: &Arc<BanManager>, policy: &Arc<Policy>) {
    let p = Arc::clone(policy);
    let restored = bans
        .restore_at_start(move |ip| p.protection(ip).map(|pr| pr.to_string()))
        .await;
    let restored = match restored {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("RESTORE => {e}");
            return;
        }
    };
    for w in &restored.warnings {
        tracing::warn!("RESTORE => {w}");
    }
    if !restored.warnings.is_empty()
        && let Some(path) = bans.dump_path()
    {
        keep_aside(path, bans.clock().now());
    }
    if let Some(history) = restored.history.filter(|_| !policy.is_original()) {
        match serde_json::from_value(history) {
            Ok(h) => {
                let n = policy.detector().load_history(h, bans.clock().now_ms());
                tracing::info!("RESTORE => history of {n} sources");
            }
            Err(e) => tracing::warn!("RESTORE => history ignored: {e}"),
        }
    }
}

/// Copies a dump that had bad entries to `<dump>.bad-<time>` (never over
/// an existing copy), before the next dump replaces it.
fn keep_aside(path: &std::path::Path, now: u64) {
    let aside = path.with_extension(format!("bad-{now}"));
    if aside.exists() || !path.exists() {
        return;
    }
    match std::fs::copy(path, &aside) {
        Ok(_) => tracing::warn!(
            "RESTORE => the dump as it was is kept as {} for inspection",
            aside.display()
        ),
        Err(e) => tracing::error!("RESTORE => could not keep a copy of the dump: {e}"),
    }
}

/// Applies policy to each event as it arrives.
async fn judge_events(
    mut events: mpsc::Receiver<SecurityEvent>,
    policy: Arc<Policy>,
    bans: Arc<BanManager>,
    deny_path: Option<PathBuf>,
    stats: Arc<crate::stats::Stats>,
) {
    while let Some(event) = events.recv().await {
        let now_ms = bans.clock().now_ms();
        stats.event(now_ms, event.kind.name(), event.source, &event.account);
        match policy.judge(&event, now_ms) {
            Verdict::Ban {
                reason,
                ban_for,
                permanent: false,
            } => {
                bans.ban_for(event.source, &reason, ban_for);
            }
            Verdict::Ban {
                reason,
                permanent: true,
                ..
            } => promote(&policy, &bans, deny_path.as_deref(), event.source, &reason).await,
            Verdict::Spared(why) => tracing::info!(
                "WHITE LIST => {} not blocked ({}, {} account {:?}; {why})",
                event.source,
                event.kind.reason(),
                event.service,
                event.account
            ),
            // The original's semantics: a banned source that keeps
            // attacking has its ban extended (never a second rule).
            Verdict::Ignore
                if policy.is_attack(&event.kind)
                    && bans.get(event.source).is_some_and(|b| b.active) =>
            {
                bans.ban_for(event.source, event.kind.reason(), None);
            }
            Verdict::Ignore => {}
        }
    }
}

/// A repeat offender moves to the permanent deny list (saved to its file)
/// and stays banned.
async fn promote(
    policy: &Policy,
    bans: &BanManager,
    deny_path: Option<&std::path::Path>,
    ip: IpAddr,
    reason: &str,
) {
    let note = format!(
        "permanent {} after: {}",
        crate::clock::stamp(bans.clock().now()).trim_matches(['[', ']']),
        reason.replace('#', "")
    );
    let mut lists = (*policy.lists()).clone();
    let _ = lists.deny.add(ipnet::IpNet::from(ip), Some(&note));
    if let Some(path) = deny_path
        && let Err(e) = save_list(lists.deny.clone(), path.to_path_buf()).await
    {
        tracing::error!("DENY LIST => not saved: {e}");
    }
    policy.set_lists(lists);
    tracing::info!("DENY => {ip} added to the deny list ({reason})");
    enforce_deny_list(bans, policy).await;
    bans.ban_permanently(ip, reason);
}

/// Writes a list file off the async runtime (atomic, see
/// [`crate::atomic_file`]).
pub async fn save_list(list: AddressList, path: PathBuf) -> Result<(), String> {
    match tokio::task::spawn_blocking(move || list.save(&path)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Drops idle per-source state and forgotten history once a minute.
async fn purge_detector(policy: Arc<Policy>, clock: Clock, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                policy.detector().purge(clock.now_ms());
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

fn counts(l: &Lists) -> (usize, usize) {
    (l.allow.len(), l.deny.len())
}

/// Marks a core task: if it ends (or panics) before shutdown, `died` fires.
struct Watch {
    name: &'static str,
    shutdown: CancellationToken,
    died: CancellationToken,
}

impl Watch {
    fn spawn(self, task: impl std::future::Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        tokio::spawn(async move {
            let _watch = self;
            task.await;
        })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.shutdown.is_cancelled() {
            tracing::error!("internal task '{}' stopped unexpectedly", self.name);
            self.died.cancel();
        }
    }
}

/// Puts the deny list in force in the firewall (permanent, CIDR as well).
pub async fn enforce_deny_list(bans: &BanManager, policy: &Policy) {
    let nets = policy.kernel_deny_nets();
    let n = nets.len();
    match bans.firewall().set_denied(nets).await {
        Ok(()) if n > 0 => tracing::info!("DENY LIST => {n} entries in the firewall"),
        Ok(()) => {}
        Err(e) => tracing::error!("DENY LIST => not in the firewall: {e}"),
    }
}
