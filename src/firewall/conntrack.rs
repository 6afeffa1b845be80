//! Deletes a newly banned source's conntrack entries, so an earlier
//! `ESTABLISHED,RELATED -j ACCEPT` rule cannot keep letting it in (fail2ban
//! #2503). Runs on its own thread: the ban is already in the firewall, this
//! is cleanup and must not delay the next batch.

use std::net::IpAddr;
use std::sync::mpsc;
use std::thread;

use super::FirewallError;
use super::exec::run;

pub struct ConntrackFlusher {
    tx: mpsc::Sender<IpAddr>,
}

impl ConntrackFlusher {
    /// `bin` is the `conntrack` tool.
    pub fn start(bin: String) -> Option<ConntrackFlusher> {
        let (tx, rx) = mpsc::channel::<IpAddr>();
        thread::Builder::new()
            .name("sipban-conntrack".into())
            .spawn(move || {
                let mut usable = true;
                while let Ok(ip) = rx.recv() {
                    if !usable {
                        continue;
                    }
                    let ip_s = ip.to_string();
                    let mut args = vec!["-D", "-s", ip_s.as_str()];
                    if ip.is_ipv6() {
                        args.extend(["-f", "ipv6"]);
                    }
                    match run(&bin, &args, None) {
                        Ok(_) => tracing::debug!("CONNTRACK => entries of {ip} deleted"),
                        // Exit 1 with "0 flow entries": nothing to delete.
                        Err(FirewallError::Command { .. }) => {}
                        Err(e) => {
                            tracing::warn!("CONNTRACK => disabled, existing flows of banned sources are kept: {e}");
                            usable = false;
                        }
                    }
                }
            })
            .ok()?;
        Some(ConntrackFlusher { tx })
    }

    pub fn flush(&self, ip: IpAddr) {
        let _ = self.tx.send(ip);
    }
}
