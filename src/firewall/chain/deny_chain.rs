//! The deny chain (`<chain>-deny`): one `-s NET -j <rule>` rule per deny
//! entry, refilled as a whole in one commit, entered from our chain just
//! before its final RETURN.

use std::fmt::Write as _;

use ipnet::IpNet;
use iptables::IPTables;

use super::rules::list_rules;
use super::{TABLE, err};
use crate::firewall::FirewallError;
use crate::firewall::exec::run;
use crate::firewall::rule::Action;

/// The chain holding the deny entries of our chain `chain`.
pub(super) fn deny_chain_name(chain: &str) -> String {
    format!("{chain}-deny")
}

/// Refills the deny chain (creating it if needed) with `nets`, atomically:
/// `iptables-restore --noflush` flushes a chain it declares, and the
/// declaration and the new rules are one commit.
pub(super) fn fill_deny(
    ipt: &IPTables,
    deny: &str,
    nets: &[IpNet],
    action: &Action,
) -> Result<(), FirewallError> {
    let mut script = String::with_capacity(32 + nets.len() * 48);
    let _ = writeln!(script, "*{TABLE}\n:{deny} - [0:0]");
    for net in nets {
        let _ = writeln!(script, "-A {deny} -s {net} -j {action}");
    }
    script.push_str("COMMIT\n");
    let restore = format!("{}-restore", ipt.cmd);
    run(&restore, &["-w", "--noflush"], Some(script.as_bytes())).map(|_| ())
}

/// Ensures one `-j DENY` rule in our chain, just before its final RETURN
/// (ban rules are inserted above it). True if it had to be added.
pub(super) fn ensure_deny_jump(
    ipt: &IPTables,
    chain: &str,
    deny: &str,
) -> Result<bool, FirewallError> {
    let rules = list_rules(ipt, chain)?;
    let jump = format!("-A {chain} -j {deny}");
    if rules.iter().any(|r| r.trim() == jump) {
        return Ok(false);
    }
    let appended = rules.iter().filter(|r| r.starts_with("-A ")).count();
    let ends_in_return = rules.last().map(|r| r.trim()) == Some(&format!("-A {chain} -j RETURN"));
    let pos = if ends_in_return {
        appended
    } else {
        appended + 1
    };
    let rule = format!("-j {deny}");
    ipt.insert(TABLE, chain, &rule, pos.max(1) as i32)
        .map_err(err(format!("{} -I {chain} {pos} {rule}", ipt.cmd)))?;
    Ok(true)
}

/// Removes the deny chain and every jump to it from our chain. True if
/// there was one.
pub(super) fn remove_deny(ipt: &IPTables, chain: &str, deny: &str) -> Result<bool, FirewallError> {
    let fail = |what: &str| err(format!("{} {what}", ipt.cmd));
    if !ipt.chain_exists(TABLE, deny).map_err(fail("-L"))? {
        return Ok(false);
    }
    if ipt.chain_exists(TABLE, chain).map_err(fail("-L"))? {
        ipt.delete_all(TABLE, chain, &format!("-j {deny}"))
            .map_err(fail(&format!("-D {chain} -j {deny}")))?;
    }
    ipt.flush_chain(TABLE, deny)
        .map_err(fail(&format!("-F {deny}")))?;
    ipt.delete_chain(TABLE, deny)
        .map_err(fail(&format!("-X {deny}")))?;
    Ok(true)
}
