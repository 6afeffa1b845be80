//! Our chain's rules as text: the `iptables-restore` scripts that write
//! them and the `-S` listing that reads them back.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::Command;

use ipnet::IpNet;
use iptables::IPTables;

use super::TABLE;
use crate::firewall::FirewallError;
use crate::firewall::deny;
use crate::firewall::exec::run;
use crate::firewall::rule::Action;

/// Makes our chain hold exactly one ban rule per address of `bans`, then
/// the final RETURN, in one `iptables-restore --noflush` commit (creating
/// the chain if needed).
pub(super) fn refill_chain(
    ipt: &IPTables,
    chain: &str,
    bans: &[IpAddr],
    action: &Action,
) -> Result<(), FirewallError> {
    let mut script = String::with_capacity(64 + bans.len() * 64);
    let _ = writeln!(script, "*{TABLE}\n:{chain} - [0:0]");
    for ip in bans {
        let _ = writeln!(script, "-A {chain} -s {ip} -j {action}");
    }
    let _ = writeln!(script, "-A {chain} -j RETURN\nCOMMIT");
    let restore = format!("{}-restore", ipt.cmd);
    run(&restore, &["-w", "--noflush"], Some(script.as_bytes())).map(|_| ())
}

/// One family's batch of ban changes as an `iptables-restore --noflush`
/// script: no chain is declared, so nothing is flushed, and the whole batch
/// is one commit (all or nothing). Adds go after the bans already there,
/// before the deny jump and the final RETURN, as one at a time would
/// (positions count the lines before them); deletes name the rule. `known` is brought to the state after the
/// batch; deletes of addresses it does not hold are left out and returned
/// (a delete of a missing rule would fail the whole commit). `None` when
/// nothing is left to write.
pub(super) fn ban_script(
    chain: &str,
    action: &Action,
    known: &mut HashSet<IpAddr>,
    ops: &[(IpAddr, bool)],
) -> (Option<String>, Vec<IpAddr>) {
    let mut script = String::with_capacity(16 + ops.len() * 56);
    let _ = writeln!(script, "*{TABLE}");
    let mut lines = 0;
    let mut strays = Vec::new();
    for &(ip, add) in ops {
        if add {
            if known.insert(ip) {
                let pos = known.len();
                let _ = writeln!(script, "-I {chain} {pos} -s {ip} -j {action}");
                lines += 1;
            }
        } else if known.remove(&ip) {
            let _ = writeln!(script, "-D {chain} -s {ip} -j {action}");
            lines += 1;
        } else {
            strays.push(ip);
        }
    }
    script.push_str("COMMIT\n");
    ((lines > 0).then_some(script), strays)
}

/// The banned address of one of our chain's ban rules (`-A CHAIN -s IP/32
/// -j ACTION`), not of its RETURN or its jump to the deny chain.
pub(super) fn ban_source(rule: &str, chain: &str) -> Option<IpAddr> {
    let rest = rule.trim().strip_prefix("-A ")?.strip_prefix(chain)?;
    if !rest.starts_with(' ') || rest.contains(" -j RETURN") {
        return None;
    }
    let ip = parse_source(rest)?;
    let host = rule.contains(&format!("{ip}/32")) || rule.contains(&format!("{ip}/128"));
    host.then_some(ip)
}

/// `iptables -S chain`, failing on a non-zero exit (the crate's `list`
/// ignores the exit status and, in numeric mode, passes `-n`, which `-S`
/// rejects).
pub(super) fn list_rules(ipt: &IPTables, chain: &str) -> Result<Vec<String>, FirewallError> {
    let out = Command::new(ipt.cmd)
        .args(["-w", "-t", TABLE, "-S", chain])
        .output()
        .map_err(|e| FirewallError::Command {
            what: format!("{} -S {chain}", ipt.cmd),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(FirewallError::Command {
            what: format!("{} -S {chain}", ipt.cmd),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// The source address of a `-A chain -s 192.0.2.1/32 -j DROP` line.
pub(super) fn parse_source(rule: &str) -> Option<IpAddr> {
    let mut words = rule.split_whitespace();
    words.find(|w| *w == "-s")?;
    let src = words.next()?;
    let addr = src.split('/').next()?;
    addr.parse().ok()
}

/// The source network of a `-A chain-deny -s 192.0.2.0/24 -j DROP` line.
pub(super) fn parse_net(rule: &str) -> Option<IpNet> {
    let mut words = rule.split_whitespace();
    words.find(|w| *w == "-s")?;
    deny::parse_net(words.next()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_of_listed_rules() {
        assert_eq!(
            parse_source(
                "-A sipban-udp -s 203.0.113.7/32 -j REJECT --reject-with icmp-port-unreachable"
            ),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            parse_source("-A sipban-udp -s 2001:db8::1/128 -j DROP"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_source("-A sipban-udp -j RETURN"), None);
        let c = "sipban-udp";
        assert_eq!(
            ban_source("-A sipban-udp -s 203.0.113.7/32 -j DROP", c),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            ban_source("-A sipban-udp -s 2001:db8::1/128 -j REJECT", c),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(ban_source("-A sipban-udp -j RETURN", c), None);
        assert_eq!(ban_source("-A sipban-udp -j sipban-udp-deny", c), None);
        assert_eq!(
            ban_source("-A sipban-udp-deny -s 10.0.0.0/8 -j DROP", c),
            None
        );
        assert_eq!(ban_source("-A sipban-udp -s 10.0.0.0/8 -j DROP", c), None);
        assert_eq!(ban_source("-N sipban-udp", c), None);
    }

    #[test]
    fn a_batch_is_one_script_and_known_follows_it() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut known: HashSet<IpAddr> = [ip("192.0.2.9")].into_iter().collect();
        let ops = [
            (ip("192.0.2.1"), true),
            (ip("192.0.2.1"), true),
            (ip("192.0.2.9"), false),
            (ip("192.0.2.2"), true),
            (ip("192.0.2.7"), false),
            (ip("192.0.2.1"), false),
            (ip("192.0.2.1"), true),
        ];
        let (script, strays) = ban_script("sipban-udp", &Action::Drop, &mut known, &ops);
        assert_eq!(
            script.as_deref(),
            Some(
                "*filter\n\
                 -I sipban-udp 2 -s 192.0.2.1 -j DROP\n\
                 -D sipban-udp -s 192.0.2.9 -j DROP\n\
                 -I sipban-udp 2 -s 192.0.2.2 -j DROP\n\
                 -D sipban-udp -s 192.0.2.1 -j DROP\n\
                 -I sipban-udp 2 -s 192.0.2.1 -j DROP\n\
                 COMMIT\n"
            )
        );
        assert_eq!(strays, vec![ip("192.0.2.7")]);
        assert_eq!(
            known,
            [ip("192.0.2.1"), ip("192.0.2.2")].into_iter().collect()
        );
        let (script, strays) =
            ban_script("c", &Action::Drop, &mut known, &[(ip("192.0.2.8"), false)]);
        assert_eq!((script, strays), (None, vec![ip("192.0.2.8")]));
    }
}
