//! The line console on `[control] address:port`: the accept loop and what
//! every session shares. Each session runs in its own task
//! ([`super::session`]); the [`Registry`] bounds them and makes
//! room for a newcomer when all slots are taken.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::registry::{MAX_SESSIONS, Registry};
use super::session;
use crate::ami::AmiHandle;
use crate::bans::BanManager;
use crate::policy::Policy;

pub const PROMPT: &str = "sipban>";

/// What the console works on: a view of the bans plus the AMI link.
pub struct ConsoleContext {
    pub bans: Arc<BanManager>,
    pub policy: Arc<Policy>,
    pub ami: Option<AmiHandle>,
    pub chain: String,
    pub started: Instant,
    /// Allow and deny list files (`[lists]`); changes are saved there.
    pub list_files: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Counters for `report`.
    pub stats: Arc<crate::stats::Stats>,
    /// `login SECRET` required before any other command.
    pub secret: Option<crate::ami::Secret>,
    /// Idle sessions are closed after this.
    pub idle_timeout: std::time::Duration,
    /// The only directory `allow|deny import PATH` may read from.
    pub import_dir: Option<std::path::PathBuf>,
    /// `save` answers `ipset NAME saved` with the 2024 original's set name
    /// (`[ipset] set_name`), else names the dump file.
    pub ipset_name: Option<String>,
    /// Where `whois` asks.
    pub whois: super::whois::WhoisSettings,
    /// The SIP sensor's state, when `[sip]` enabled it.
    pub sensor: Option<Arc<crate::sensor::live::SensorStatus>>,
}

pub async fn serve(listener: TcpListener, ctx: Arc<ConsoleContext>, shutdown: CancellationToken) {
    let registry = Registry::new(MAX_SESSIONS);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
        };
        let (mut socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("CONSOLE => accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(seat) = registry.admit() else {
            tracing::warn!("CONSOLE => session from {peer} turned away: every session is busy");
            // A fresh socket's buffer is empty: this write does not wait.
            let _ = socket
                .write_all(
                    format!(
                        "too many console sessions (all {MAX_SESSIONS} are running a command); try again\n"
                    )
                    .as_bytes(),
                )
                .await;
            continue;
        };
        let ctx = Arc::clone(&ctx);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tracing::debug!("CONSOLE => session from {peer}");
            if let Err(e) = session::run(socket, peer, &ctx, seat, shutdown).await {
                tracing::debug!("CONSOLE => session from {peer} ended: {e}");
            }
        });
    }
}
