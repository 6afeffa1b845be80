//! The line console on `[control] address:port`: accept loop, one task per
//! session, replies worded as the original SIPban's. Lines end in `\n` or
//! `\r\n` (so `nc` works); a line over the cap gets an error and the session
//! goes on.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::sync::CancellationToken;

use super::command::{Command, ListName, ListOp, StatusView, uptime_text};
use crate::ami::AmiHandle;
use crate::bans::{BanManager, UnbanReason};
use crate::clock::stamp;
use crate::policy::Policy;

pub const MAX_LINE: usize = 1024;
pub const MAX_SESSIONS: usize = 64;
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
}

#[derive(Debug, PartialEq, Eq)]
enum Line {
    Text(String),
    TooLong,
}

/// Lines capped at `MAX_LINE` bytes; an over-long line is reported once and
/// skipped up to its end.
#[derive(Default)]
struct LineCodec {
    discarding: bool,
}

impl Decoder for LineCodec {
    type Item = Line;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        loop {
            let nl = buf.iter().position(|&b| b == b'\n');
            if self.discarding {
                match nl {
                    Some(i) => {
                        buf.advance(i + 1);
                        self.discarding = false;
                        continue;
                    }
                    None => {
                        buf.clear();
                        return Ok(None);
                    }
                }
            }
            return Ok(match nl {
                Some(i) if i > MAX_LINE => {
                    buf.advance(i + 1);
                    Some(Line::TooLong)
                }
                Some(i) => {
                    let raw = buf.split_to(i + 1);
                    let text = String::from_utf8_lossy(&raw[..i]);
                    let text: String = text
                        .chars()
                        .filter(|c| !c.is_control() || *c == '\t')
                        .collect();
                    Some(Line::Text(text))
                }
                None if buf.len() > MAX_LINE => {
                    buf.clear();
                    self.discarding = true;
                    Some(Line::TooLong)
                }
                None => None,
            });
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        if let Some(line) = self.decode(buf)? {
            return Ok(Some(line));
        }
        if buf.is_empty() || self.discarding {
            buf.clear();
            return Ok(None);
        }
        // A last command without a newline still counts.
        let raw = buf.split();
        Ok(Some(Line::Text(
            String::from_utf8_lossy(&raw).trim().to_string(),
        )))
    }
}

pub async fn serve(listener: TcpListener, ctx: Arc<ConsoleContext>, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(MAX_SESSIONS));
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
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            let _ = socket.write_all(b"too many console sessions\n").await;
            continue;
        };
        let ctx = Arc::clone(&ctx);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tracing::debug!("CONSOLE => session from {peer}");
            if let Err(e) = session(socket, &ctx, shutdown).await {
                tracing::debug!("CONSOLE => session from {peer} ended: {e}");
            }
            drop(permit);
        });
    }
}

async fn session(
    socket: TcpStream,
    ctx: &ConsoleContext,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = FramedRead::new(read, LineCodec::default());
    let banner = format!(
        "\nSipban {} (sipban-rs)\nuse 'help' for more commands\n{PROMPT}",
        env!("CARGO_PKG_VERSION")
    );
    write.write_all(banner.as_bytes()).await?;
    loop {
        let line = tokio::select! {
            l = lines.next() => l,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let reply = match line {
            None => return Ok(()),
            Some(Err(e)) => return Err(e),
            Some(Ok(Line::TooLong)) => {
                format!("line too long (over {MAX_LINE} bytes), ignored\n")
            }
            Some(Ok(Line::Text(text))) => match execute(ctx, Command::parse(&text)).await {
                Some(reply) => reply,
                None => return Ok(()),
            },
        };
        let out = if reply.is_empty() {
            PROMPT.to_string()
        } else {
            format!("{reply}\n{PROMPT}")
        };
        write.write_all(out.as_bytes()).await?;
    }
}

/// Runs one command; `None` ends the session.
pub async fn execute(ctx: &ConsoleContext, cmd: Command) -> Option<String> {
    let reply = match cmd {
        Command::Quit => return None,
        Command::Nothing => String::new(),
        Command::Error(text) => format!("{text}\n"),
        Command::List => ctx
            .bans
            .list()
            .iter()
            .map(|b| format!("{} {}\n", stamp(b.expires), b.ip))
            .collect(),
        Command::Block(ip) => {
            if let Some(p) = ctx.policy.protection(ip) {
                format!("{ip} is protected ({p}), not blocked\n")
            } else if ctx.bans.get(ip).is_some_and(|b| b.active) {
                format!("{ip} previously blocked\n")
            } else {
                ctx.bans.ban(ip, "Manual block");
                format!("{ip} block\n")
            }
        }
        Command::Unblock(ip) => {
            // The detector must know: the source may be caught again.
            ctx.policy
                .detector()
                .unbanned(ip, ctx.bans.clock().now_ms());
            if ctx.bans.unban(ip, UnbanReason::Manual) {
                format!("{ip} unblocked\n")
            } else {
                format!("{ip} is not previously blocked\n")
            }
        }
        Command::Flush => match ctx.bans.flush().await {
            Ok(_) => format!("iptables rules from chain {} removed\n", ctx.chain),
            Err(e) => format!("flush refused, nothing removed: {e}\n"),
        },
        Command::Restore => {
            let policy = Arc::clone(&ctx.policy);
            match ctx
                .bans
                .restore(move |ip| policy.protection(ip).map(|p| p.to_string()))
                .await
            {
                Ok(None) => "no dump file to restore rules\n".to_string(),
                Ok(Some(report)) => {
                    let mut out = format!("Restore rules {}\n", ctx.chain);
                    for ban in &report.added {
                        out.push_str(&format!("{} {}\n", stamp(ban.expires), ban.ip));
                    }
                    for (ip, why) in &report.spared {
                        out.push_str(&format!("{ip} not restored: {why}\n"));
                    }
                    out.push_str("End restore rules\n");
                    out
                }
                Err(e) => format!("restore failed, nothing changed: {e}\n"),
            }
        }
        Command::Ping => match &ctx.ami {
            None => "Ping not sent: no AMI connection in this mode\n".to_string(),
            Some(ami) => match ami.ping().await {
                Ok(rtt) => format!("Ping sent\nPong from Asterisk in {} ms\n", rtt.as_millis()),
                Err(e) => format!("Ping sent\nNo answer from Asterisk: {e}\n"),
            },
        },
        Command::Uptime => format!("Uptime {}\n", uptime_text(ctx.started.elapsed().as_secs())),
        Command::Wl => ctx
            .policy
            .lists()
            .allow
            .entries()
            .iter()
            .map(|e| {
                let net = e.net;
                let addr = if net.prefix_len() == net.max_prefix_len() {
                    net.addr().to_string()
                } else {
                    net.to_string()
                };
                match &e.note {
                    Some(note) => format!("{addr} {note}\n"),
                    None => format!("{addr}\n"),
                }
            })
            .collect(),
        Command::CheckFirewall => match ctx.bans.check_firewall().await {
            Ok(report) => format!("{report}\n"),
            Err(e) => format!("firewall check failed: {e}\n"),
        },
        Command::Status(view) => status(ctx, view),
        Command::Check(ip) => check(ctx, ip),
        Command::Lists(name, op) => list_change(ctx, name, op).await,
        Command::Reload => match &ctx.list_files {
            None => "no list files configured\n".to_string(),
            Some((allow, deny)) => match ctx.policy.reload_lists(allow, deny) {
                Ok((a, d)) => {
                    crate::daemon::enforce_deny_list(&ctx.bans, &ctx.policy).await;
                    format!("lists reloaded: {a} allow, {d} deny entries\n")
                }
                Err(e) => format!("reload failed, old lists kept: {e}\n"),
            },
        },
        Command::Version => format!("sipban {}\n", env!("CARGO_PKG_VERSION")),
        Command::Report => ctx.stats.report(ctx.bans.clock().now_ms(), 10).to_string(),
        Command::Help => help(&ctx.chain),
    };
    Some(reply)
}

/// `addr note` lines of a list.
fn entries_text(list: &crate::policy::lists::AddressList) -> String {
    list.entries().iter().map(|e| format!("{e}\n")).collect()
}

fn status(ctx: &ConsoleContext, view: StatusView) -> String {
    let lists = ctx.policy.lists();
    let bans = ctx.bans.list();
    let permanent = bans.iter().filter(|b| b.is_permanent()).count();
    let mut out = format!(
        "{:<22}{:>8}\n{:<22}{:>8}\n{:<22}{:>8}\n{:<22}{:>8}\n{:<22}{:>8}\n",
        "List",
        "Entries",
        "Allow",
        lists.allow.len(),
        "Deny",
        lists.deny.len(),
        "Dynamic (permanent)",
        permanent,
        "Dynamic (temporary)",
        bans.len() - permanent
    );
    let dynamic = || -> String {
        let detector = ctx.policy.detector();
        bans.iter()
            .map(|b| {
                // Per-source detail exists when a [policy] feeds the detector.
                let seen = detector
                    .source_info(b.ip)
                    .map(|i| {
                        format!(
                            ", first seen {}, last seen {}, accounts: {}",
                            stamp(i.first_seen_ms / 1000),
                            stamp(i.last_seen_ms / 1000),
                            if i.accounts_tried.is_empty() {
                                "none".to_string()
                            } else {
                                i.accounts_tried.join(" ")
                            }
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "{} {} ({}, {} event{}{seen})\n",
                    stamp(b.expires),
                    b.ip,
                    b.reason,
                    b.count,
                    if b.count == 1 { "" } else { "s" }
                )
            })
            .collect()
    };
    let section = |title: &str, body: String| format!("\n{title}:\n{body}");
    match view {
        StatusView::Summary => {}
        StatusView::Allow => out.push_str(&section("Allow", entries_text(&lists.allow))),
        StatusView::Deny => out.push_str(&section("Deny", entries_text(&lists.deny))),
        StatusView::Dynamic => out.push_str(&section("Dynamic", dynamic())),
        StatusView::All => {
            out.push_str(&section("Allow", entries_text(&lists.allow)));
            out.push_str(&section("Deny", entries_text(&lists.deny)));
            out.push_str(&section("Dynamic", dynamic()));
        }
    }
    out
}

fn check(ctx: &ConsoleContext, ip: std::net::IpAddr) -> String {
    let mut out = Vec::new();
    let lists = ctx.policy.lists();
    match ctx.policy.protection(ip) {
        Some(crate::policy::Protected::WhiteList(net)) => {
            let note = lists.allow.get(net).and_then(|e| e.note.clone());
            out.push(format!(
                "{ip}: allowed by the allow list entry {net}{}",
                note.map(|n| format!(" ({n})")).unwrap_or_default()
            ));
        }
        Some(p) => out.push(format!("{ip}: never banned ({p})")),
        None => {}
    }
    if let Some(e) = lists.deny.find(ip) {
        out.push(format!(
            "{ip}: denied by the deny list entry {}{}",
            e.net,
            e.note
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ));
    }
    if let Some(b) = ctx.bans.get(ip) {
        out.push(format!(
            "{ip}: banned until {} ({}), reported {} time{}{}",
            stamp(b.expires),
            b.reason,
            b.count,
            if b.count == 1 { "" } else { "s" },
            if b.active { "" } else { ", flushed" }
        ));
    }
    let now_ms = ctx.bans.clock().now_ms();
    let detector = ctx.policy.detector();
    if let Some(h) = detector.history_of(ip, now_ms) {
        out.push(format!(
            "{ip}: banned {} time{} so far{}",
            h.ban_count,
            if h.ban_count == 1 { "" } else { "s" },
            if h.permanent { ", now permanent" } else { "" }
        ));
    }
    if let Some(i) = detector.source_info(ip) {
        out.push(format!(
            "{ip}: first seen {}, last seen {}, {} events ({} failures), accounts tried: {}",
            stamp(i.first_seen_ms / 1000),
            stamp(i.last_seen_ms / 1000),
            i.events,
            i.failures,
            if i.accounts_tried.is_empty() {
                "none".to_string()
            } else {
                i.accounts_tried.join(", ")
            }
        ));
    }
    if out.is_empty() {
        out.push(format!("{ip}: not listed, not banned, no events seen"));
    }
    out.join("\n") + "\n"
}

/// `allow|deny add|del|list`: changes the list in force and its file.
async fn list_change(ctx: &ConsoleContext, name: ListName, op: ListOp) -> String {
    let which = name.as_str();
    let mut lists = (*ctx.policy.lists()).clone();
    let list = match name {
        ListName::Allow => &mut lists.allow,
        ListName::Deny => &mut lists.deny,
    };
    let (reply, net) = match op {
        ListOp::Show => return entries_text(list),
        ListOp::Export => return list.to_csv(),
        ListOp::Import(path) => {
            let read = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || std::fs::read_to_string(&path)).await
            };
            let text = match read {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => return format!("error: cannot read {}: {e}\n", path.display()),
                Err(e) => return format!("error: {e}\n"),
            };
            let imported = match crate::policy::lists::AddressList::from_csv(&text, &path) {
                Ok(l) => l,
                Err(e) => return format!("error: nothing imported: {e}\n"),
            };
            let mut added = 0;
            for e in imported.entries() {
                if let Ok(true) = list.add(e.net, e.note.as_deref()) {
                    added += 1;
                }
            }
            let total = imported.len();
            let reply = format!("{added} of {total} entries added to the {which} list");
            // No per-entry follow-up: the deny list is enforced as a whole.
            (reply, None)
        }
        ListOp::Add(net, note) => match list.add(net, note.as_deref()) {
            Ok(true) => (format!("{net} added to the {which} list"), Some(net)),
            Ok(false) => return format!("{net} is already in the {which} list\n"),
            Err(e) => return format!("error: {e}\n"),
        },
        ListOp::Del(net) => {
            if list.remove(net) {
                (format!("{net} removed from the {which} list"), Some(net))
            } else {
                return format!("{net} is not in the {which} list\n");
            }
        }
    };
    let saved = match &ctx.list_files {
        None => Some("not saved: no list file configured".to_string()),
        Some((allow, deny)) => {
            let path = match name {
                ListName::Allow => allow.clone(),
                ListName::Deny => deny.clone(),
            };
            crate::daemon::save_list(list.clone(), path)
                .await
                .err()
                .map(|e| format!("not saved: {e}"))
        }
    };
    ctx.policy.set_lists(lists);
    tracing::info!("LISTS => {reply} (console)");
    if name == ListName::Deny {
        crate::daemon::enforce_deny_list(&ctx.bans, &ctx.policy).await;
    }
    if let Some(net) = net {
        follow_list_change(ctx, name, net).await;
    }
    match saved {
        None => format!("{reply}\n"),
        Some(problem) => format!("error: {reply}, but {problem}\n"),
    }
}

/// What one added or removed entry means for the bans in force.
async fn follow_list_change(ctx: &ConsoleContext, name: ListName, net: ipnet::IpNet) {
    let lists = ctx.policy.lists();
    let listed = match name {
        ListName::Allow => lists.allow.get(net).is_some(),
        ListName::Deny => lists.deny.get(net).is_some(),
    };
    let inside = |ip: &std::net::IpAddr| net.contains(ip);
    match (name, listed) {
        // An allowed address is let in at once.
        (ListName::Allow, true) => {
            for b in ctx.bans.list().iter().filter(|b| inside(&b.ip)) {
                ctx.bans.unban(b.ip, UnbanReason::Manual);
            }
        }
        (ListName::Allow, false) => {}
        // Taken off the deny list: its permanent bans end, history resets.
        (ListName::Deny, false) => {
            let now_ms = ctx.bans.clock().now_ms();
            for b in ctx.bans.list().iter().filter(|b| inside(&b.ip)) {
                if b.is_permanent() {
                    ctx.bans.unban(b.ip, UnbanReason::Manual);
                    ctx.policy.detector().unbanned(b.ip, now_ms);
                }
            }
        }
        // A denied single address is banned at once, permanently.
        (ListName::Deny, true) => {
            let ip = net.addr();
            if net.prefix_len() == net.max_prefix_len() && ctx.policy.protection(ip).is_none() {
                ctx.bans.ban_permanently(ip, "deny list");
            }
        }
    }
}

fn help(chain: &str) -> String {
    format!(
        "\nCommands:\n\n\
         block                => List blocked ip address\n\
         block {{ip address}}   => block ip address\n\
         unblock [ip address] => unblock ip address\n\
         flush                => Dump the blocked IP's and clear rules on chain {chain}\n\
         restore              => If exists a dump file restore the rules from it\n\
         ping                 => Send ping to Asterisk AMI\n\
         uptime               => show the program uptime\n\
         wl                   => show white list ip address\n\
         check-firewall       => compare the firewall with the bans, repair drift\n\
         status [--all|--allow|--deny|--dynamic] => list and ban counts (or entries)\n\
         check {{ip address}}   => which list or ban holds it, and why\n\
         allow add|del {{ip/cidr}} [note], allow list => the allow (white) list\n\
         deny add|del {{ip/cidr}} [note], deny list   => the permanent deny list\n\
         allow|deny import {{file.csv}}, allow|deny export => CSV (address,note)\n\
         report               => the last 24 hours: events, top sources and accounts, bans\n\
         reload               => re-read the allow and deny list files\n\
         version              => show the version\n\
         exit/quit            => exit console session\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Vec<Line> {
        let mut codec = LineCodec::default();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(l) = codec.decode(&mut buf).unwrap() {
            out.push(l);
        }
        while let Some(l) = codec.decode_eof(&mut buf).unwrap() {
            out.push(l);
        }
        out
    }

    #[test]
    fn crlf_and_lf_lines() {
        assert_eq!(
            decode_all(b"block\r\nwl\nuptime"),
            vec![
                Line::Text("block".into()),
                Line::Text("wl".into()),
                Line::Text("uptime".into())
            ]
        );
    }

    #[test]
    fn long_line_is_reported_once_and_session_continues() {
        let mut input = vec![b'x'; 5000];
        input.extend_from_slice(b"\nhelp\n");
        assert_eq!(
            decode_all(&input),
            vec![Line::TooLong, Line::Text("help".into())]
        );
    }
}
