//! Wiring: AMI events (and the firewall's rate-limit reports) -> policy ->
//! ban store -> firewall applier, plus the expiry task, the dump writer and
//! the console. The binary and the tests
//! both start the daemon through [`Daemon::start`].
//!
//! - `settings`: what the daemon is started with, from the config;
//! - `backend`: the firewall backend the config asks for;
//! - `restore`: the start-up restore and what it reports;
//! - `judge`: events to verdicts to bans, escalation to the deny list;
//! - `lists`: list files written and the deny list put in force;
//! - `watch`: a core task ending before shutdown is a failure.

mod backend;
mod judge;
mod lists;
mod restore;
mod settings;
mod watch;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ami::{self, AmiHandle};
use crate::bans::{BanManager, DumpError};
use crate::clock::Clock;
use crate::console::{self, ConsoleContext};
use crate::firewall::{ApplierOptions, Backend, Firewall, FirewallError, FloodWatch};
use crate::policy::Policy;
use crate::policy::lists::{AddressList, Lists};
pub use backend::build_backend;
use judge::{judge_events, purge_detector};
pub use lists::{enforce_deny_list, save_list};
use restore::restore_at_start;
pub use settings::{PolicySettings, Settings};
use watch::Watch;

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
        mut backend: Box<dyn Backend>,
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
        let flood_watch = backend.flood_watch();
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

        // Subscribed now, not when the task first runs: a change made
        // right after the start must not be missed.
        tasks.push(watch("network bans").spawn(lists::follow_network_bans(
            Arc::clone(&bans),
            Arc::clone(&policy),
            bans.networks_changed(),
            shutdown.clone(),
        )));

        if let Some(every) = settings.firewall_check {
            tasks.push(
                watch("firewall check")
                    .spawn(Arc::clone(&bans).run_firewall_check(every, shutdown.clone())),
            );
        }

        // Small: the AMI reader waits (TCP holds the rest) rather than
        // buffering a whole storm in memory.
        let (events_tx, events_rx) = mpsc::channel(1024);
        let limit_events = events_tx.clone();
        // The sensor's tasks are not watched: their end (no capture) must
        // not stop the daemon, which goes on with the AMI.
        let sensor = settings.sensor.clone().map(|s| {
            let status = Arc::new(crate::sensor::live::SensorStatus::default());
            crate::sensor::live::spawn(s, events_tx.clone(), Arc::clone(&status), shutdown.clone());
            status
        });
        let (ami, ami_task) = ami::client::spawn(settings.ami.clone(), events_tx, shutdown.clone());
        tasks.push(watch("AMI client").spawn(async move {
            if let Err(e) = ami_task.await {
                tracing::error!("AMI client failed: {e}");
            }
        }));
        if let Some(fw) = flood_watch {
            tasks.push(watch("rate limit watch").spawn(watch_floods(
                fw,
                limit_events,
                Arc::clone(&stats),
                bans.clock().clone(),
                shutdown.clone(),
            )));
        }
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
            ipset_name: settings.ipset_name.clone(),
            whois: settings.whois.clone(),
            sensor,
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

/// Runs the flood watch on a thread of its own (its reads block; the thread
/// is in this thread's network namespace, like the applier) until shutdown.
async fn watch_floods(
    fw: FloodWatch,
    events: mpsc::Sender<crate::event::SecurityEvent>,
    stats: Arc<crate::stats::Stats>,
    clock: Clock,
    shutdown: CancellationToken,
) {
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("sipban-limits".into())
        .spawn(move || {
            crate::firewall::limits::watch::run(fw, events, stats, clock, stop_rx);
            drop(done_tx);
        });
    if let Err(e) = spawned {
        tracing::error!("RATE LIMIT => cannot start the flood watch: {e}");
        return;
    }
    tokio::select! {
        _ = done_rx => {}
        _ = shutdown.cancelled() => {}
    }
    drop(stop_tx);
}

fn counts(l: &Lists) -> (usize, usize) {
    (l.allow.len(), l.deny.len())
}
