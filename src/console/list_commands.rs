//! `allow|deny add|del|list|import|export`: changes to the lists in force
//! and their files. Deny entries that would cut off loopback, the AMI host
//! or an allowed address, or that are wider than /8 (/32 for IPv6), are
//! refused unless forced ([`Policy::deny_conflict`]). An import is all or
//! nothing: one bad or refused line and nothing changes.
//!
//! [`Policy::deny_conflict`]: crate::policy::Policy::deny_conflict

use std::path::Path;

use ipnet::IpNet;

use super::command::{ImportSource, ListName, ListOp};
use super::import::{self, Collected, MAX_LISTED};
use super::server::ConsoleContext;
use crate::bans::UnbanReason;
use crate::policy::lists::{AddressList, Lists};

/// `allow|deny ...` but the import of lines the session gathers
/// ([`import_lines`]).
pub async fn change(ctx: &ConsoleContext, name: ListName, op: ListOp) -> String {
    let which = name.as_str();
    let lists = ctx.policy.lists();
    match op {
        ListOp::Show => entries_text(list_of(&lists, name)),
        ListOp::Export => list_of(&lists, name).to_csv(),
        ListOp::Import { source, force } => match source {
            ImportSource::Lines => {
                "error: the lines of an import are read by the session\n".to_string()
            }
            ImportSource::File(path) => {
                let dir = ctx.import_dir.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let real = import::resolve(dir.as_deref(), &path)?;
                    import::read(&real).map(|c| (c, real))
                })
                .await;
                match read {
                    Ok(Ok((collected, real))) => {
                        import_collected(ctx, name, force, &collected, &real).await
                    }
                    Ok(Err(e)) => format!("{e}\n"),
                    Err(e) => format!("error: {e}\n"),
                }
            }
        },
        ListOp::Add { net, note, force } => {
            if let Some(why) = refusal(ctx, name, net, force) {
                let hint = match name {
                    ListName::Deny => format!(" (deny add --force {net} adds it anyway)"),
                    ListName::Allow => String::new(),
                };
                return format!("error: {why}; not added{hint}\n");
            }
            let mut lists = (*lists).clone();
            match list_mut(&mut lists, name).add(net, note.as_deref()) {
                Ok(true) => {}
                Ok(false) => return format!("{net} is already in the {which} list\n"),
                Err(e) => return format!("error: {e}\n"),
            }
            if force && let Some(why) = ctx.policy.deny_conflict(net) {
                tracing::warn!("LISTS => {net} added to the deny list with --force: {why}");
            }
            let reply = format!("{net} added to the {which} list");
            commit(ctx, name, lists, reply, Some(net)).await
        }
        ListOp::Del(net) => {
            let mut lists = (*lists).clone();
            if !list_mut(&mut lists, name).remove(net) {
                return format!("{net} is not in the {which} list\n");
            }
            let reply = format!("{net} removed from the {which} list");
            commit(ctx, name, lists, reply, Some(net)).await
        }
    }
}

/// The import of the lines a client sent after `allow|deny import`.
pub async fn import_lines(
    ctx: &ConsoleContext,
    name: ListName,
    force: bool,
    collected: &Collected,
) -> String {
    import_collected(ctx, name, force, collected, Path::new("console")).await
}

async fn import_collected(
    ctx: &ConsoleContext,
    name: ListName,
    force: bool,
    collected: &Collected,
    origin: &Path,
) -> String {
    let which = name.as_str();
    let text = match collected.text() {
        Ok(text) => text,
        Err(why) => return format!("error: nothing imported: {why}\n"),
    };
    let kind = match name {
        ListName::Allow => crate::policy::lists::ListKind::Allow,
        ListName::Deny => crate::policy::lists::ListKind::Deny,
    };
    let imported = match AddressList::from_csv_as(text, origin, kind) {
        Ok(list) => list,
        Err(e) => return format!("error: nothing imported: {}\n", import::csv_problem(&e)),
    };
    let refused: Vec<String> = imported
        .entries()
        .iter()
        .filter_map(|e| {
            refusal(ctx, name, e.net, force).map(|why| format!("line {}: {why}", e.line))
        })
        .collect();
    if !refused.is_empty() {
        let hint = match name {
            ListName::Deny if !force => " (deny import --force adds them anyway)",
            _ => "",
        };
        let mut out = format!(
            "error: nothing imported: {} entr{} refused{hint}",
            refused.len(),
            if refused.len() == 1 { "y" } else { "ies" }
        );
        for line in refused.iter().take(MAX_LISTED) {
            out.push_str(&format!("\n{line}"));
        }
        if refused.len() > MAX_LISTED {
            out.push_str(&format!("\n... and {} more", refused.len() - MAX_LISTED));
        }
        return out + "\n";
    }
    let mut lists = (*ctx.policy.lists()).clone();
    let list = list_mut(&mut lists, name);
    let mut added = 0;
    for e in imported.entries() {
        match list.add(e.net, e.note.as_deref()) {
            Ok(true) => added += 1,
            Ok(false) => {}
            Err(err) => {
                return format!("error: nothing imported: line {}: {err}\n", e.line);
            }
        }
    }
    let reply = format!(
        "{added} of {} entries added to the {which} list",
        imported.len()
    );
    commit(ctx, name, lists, reply, None).await
}

/// Why `net` may not go on list `name`, if it may not.
fn refusal(ctx: &ConsoleContext, name: ListName, net: IpNet, force: bool) -> Option<String> {
    match name {
        ListName::Deny if force => None,
        ListName::Deny => ctx.policy.deny_conflict(net).map(|c| c.to_string()),
        ListName::Allow if net.prefix_len() == 0 => Some(format!(
            "{net} would allow every address: nothing would ever be banned"
        )),
        ListName::Allow => None,
    }
}

fn list_of(lists: &Lists, name: ListName) -> &AddressList {
    match name {
        ListName::Allow => &lists.allow,
        ListName::Deny => &lists.deny,
    }
}

fn list_mut(lists: &mut Lists, name: ListName) -> &mut AddressList {
    match name {
        ListName::Allow => &mut lists.allow,
        ListName::Deny => &mut lists.deny,
    }
}

/// `addr note` lines of a list.
pub fn entries_text(list: &AddressList) -> String {
    list.entries().iter().map(|e| format!("{e}\n")).collect()
}

/// Saves the changed list, puts `lists` in force and follows up on the
/// bans: for one entry (`net`), or for the whole list after an import.
async fn commit(
    ctx: &ConsoleContext,
    name: ListName,
    lists: Lists,
    reply: String,
    net: Option<IpNet>,
) -> String {
    let saved = match &ctx.list_files {
        None => Some("not saved: no list file configured".to_string()),
        Some((allow, deny)) => {
            let path = match name {
                ListName::Allow => allow.clone(),
                ListName::Deny => deny.clone(),
            };
            crate::daemon::save_list(list_of(&lists, name).clone(), path)
                .await
                .err()
                .map(|e| format!("not saved: {e}"))
        }
    };
    ctx.policy.set_lists(lists);
    tracing::info!("LISTS => {reply} (console)");
    // The kernel's deny entries are the deny list minus the allow list:
    // a change of either changes them.
    crate::daemon::enforce_deny_list(&ctx.bans, &ctx.policy).await;
    match net {
        Some(net) => follow_list_change(ctx, name, net).await,
        // An import: the deny list is enforced as a whole above; newly
        // allowed addresses are let in.
        None if name == ListName::Allow => {
            let lists = ctx.policy.lists();
            for b in ctx.bans.list() {
                if lists.allow.find(b.ip).is_some() {
                    ctx.bans.unban(b.ip, UnbanReason::Manual);
                }
            }
        }
        None => {}
    }
    match saved {
        None => format!("{reply}\n"),
        Some(problem) => format!("error: {reply}, but {problem}\n"),
    }
}

/// What one added or removed entry means for the bans in force.
async fn follow_list_change(ctx: &ConsoleContext, name: ListName, net: IpNet) {
    let lists = ctx.policy.lists();
    let listed = list_of(&lists, name).get(net).is_some();
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
