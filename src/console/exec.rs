//! Runs console commands on the ban store, the policy and the AMI link,
//! and words the replies as the original SIPban did. Session matters
//! (login, the lines of an import, closing) are the session's.

use std::sync::Arc;

use super::command::{Command, StatusView, uptime_text};
use super::list_commands::{self, entries_text};
use super::server::ConsoleContext;
use crate::bans::UnbanReason;
use crate::clock::stamp;
use crate::firewall::Depth;

/// Runs one command; `None` ends the session.
pub async fn execute(ctx: &ConsoleContext, cmd: Command) -> Option<String> {
    let reply = match cmd {
        Command::Quit => return None,
        Command::Nothing => String::new(),
        // Handled by the session, before a command runs.
        Command::Login(_) => "error: login is only for console sessions\n".to_string(),
        Command::Error(text) => format!("{text}\n"),
        // Addresses, then networks, each soonest expiry first.
        Command::List => ctx
            .bans
            .list()
            .iter()
            .map(|b| format!("{} {}\n", stamp(b.expires), b.ip))
            .chain(
                ctx.bans
                    .networks()
                    .iter()
                    .map(|n| format!("{} {}\n", stamp(n.expiry), n.net)),
            )
            .collect(),
        Command::Block(ip) => {
            if let Some(p) = ctx.policy.protection(ip) {
                format!("{ip} is protected ({p}), not blocked\n")
            } else if ctx.bans.get(ip).is_some_and(|b| b.active) {
                format!("{ip} previously blocked\n")
            } else {
                // Answered once the ban is in the kernel and on disk.
                ctx.bans.ban_durably(ip, "Manual block", None).await;
                format!("{ip} block\n")
            }
        }
        Command::BlockNet { net, force } => {
            super::network_block::block_network(ctx, net, force).await
        }
        Command::UnblockNet(net) => super::network_block::unblock_network(ctx, net).await,
        Command::Save => save(ctx).await,
        Command::Whois(ip) => super::whois::reply(ip, super::whois::lookup(&ctx.whois, ip).await),
        Command::Unblock(ip) => {
            // The detector must know: the source may be caught again.
            ctx.policy
                .detector()
                .unbanned(ip, ctx.bans.clock().now_ms());
            if ctx.bans.unban_durably(ip, UnbanReason::Manual).await {
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
                    for w in &report.warnings {
                        out.push_str(&format!("skipped: {w}\n"));
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
        Command::CheckFirewall => match ctx.bans.check_firewall(Depth::Full).await {
            Ok(report) => format!("{report}\n"),
            Err(e) => format!("firewall check failed: {e}\n"),
        },
        Command::Status(view) => status(ctx, view),
        Command::Check(ip) => check(ctx, ip),
        Command::Lists(name, op) => list_commands::change(ctx, name, op).await,
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

/// `save`: the dump written now. The 2024 original's reply names its set.
async fn save(ctx: &ConsoleContext) -> String {
    let Some(path) = ctx.bans.dump_path() else {
        return "error: no dump file configured; nothing saved\n".to_string();
    };
    match ctx.bans.dump().await {
        Ok(n) => {
            tracing::info!("DUMP => {} ({n} bans)", path.display());
            match &ctx.ipset_name {
                Some(name) => format!("ipset {name} saved\n"),
                None => format!(
                    "{n} ban{} saved to {}\n",
                    if n == 1 { "" } else { "s" },
                    path.display()
                ),
            }
        }
        Err(e) => format!("error: not saved: {e}\n"),
    }
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
        let now_ms = ctx.bans.clock().now_ms();
        bans.iter()
            .map(|b| {
                // Per-source detail exists when a [policy] feeds the detector:
                // a banned source has its history (it needs no counting).
                let history = || {
                    detector.history_of(b.ip, now_ms).map(|h| {
                        format!(
                            ", first seen {}, last banned {}",
                            stamp(h.first_seen_ms / 1000),
                            stamp(h.last_ban_ms / 1000)
                        )
                    })
                };
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
                    .or_else(history)
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
    // After the original's table, only when the sensor is on.
    if let Some(sensor) = &ctx.sensor {
        for line in sensor.lines() {
            out.push_str(&line);
            out.push('\n');
        }
    }
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
            "{ip}: banned {} time{} so far{}, first seen {}, last banned {}",
            h.ban_count,
            if h.ban_count == 1 { "" } else { "s" },
            if h.permanent { ", now permanent" } else { "" },
            stamp(h.first_seen_ms / 1000),
            stamp(h.last_ban_ms / 1000)
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

pub fn help(chain: &str) -> String {
    format!(
        "\nCommands:\n\n\
         block                => List blocked ip address\n\
         block {{ip address}}   => block ip address\n\
         block [--force] {{ip/cidr}} => block every address of a network (as deny add, --force past its guard)\n\
         unblock [ip address] => unblock ip address\n\
         flush                => Dump the blocked IP's and clear rules on chain {chain}\n\
         save                 => Dump the blocked IP's\n\
         restore              => If exists a dump file restore the rules from it\n\
         ping                 => Send ping to Asterisk AMI\n\
         uptime               => show the program uptime\n\
         whois {{ip address}}   => show the WHOIS info of a given ip\n\
         wl                   => show white list ip address\n\
         check-firewall       => compare the firewall with the bans, repair drift\n\
         status [--all|--allow|--deny|--dynamic] => list and ban counts (or entries)\n\
         check {{ip address}}   => which list or ban holds it, and why\n\
         allow add|del {{ip/cidr}} [note], allow list => the allow (white) list\n\
         deny add [--force] {{ip/cidr}} [note], deny del {{ip/cidr}}, deny list => the permanent deny list\n\
         allow|deny import [--force] => then CSV lines (address,note), then a line holding only .\n\
         allow|deny import [--force] {{file.csv}} => a CSV file inside [control] import_dir\n\
         allow|deny export    => the list as CSV\n\
         report               => the last 24 hours: events, top sources and accounts, bans\n\
         reload               => re-read the allow and deny list files\n\
         version              => show the version\n\
         login {{secret}}       => log in ([control] secret)\n\
         exit/quit            => exit console session\n"
    )
}
