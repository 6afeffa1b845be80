//! The original SIPban's design: one iptables rule per banned IP in our own
//! chain (`sipban-udp`), entered by one jump at the top of INPUT for the
//! configured scope, ended by RETURN. IPv6 goes through ip6tables.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use iptables::IPTables;

use super::rule::{Action, Scope};
use super::{Backend, FirewallError};

const TABLE: &str = "filter";

/// What the iptables crate returns.
type IptResult = Result<(), Box<dyn std::error::Error>>;
const HOOK: &str = "INPUT";

#[derive(Clone, Debug)]
pub struct ChainSettings {
    /// Directory of the iptables binaries (`[iptables] path`); empty = $PATH.
    pub path: String,
    pub chain: String,
    pub scope: Scope,
    pub action_v4: Action,
    pub action_v6: Action,
}

struct Family {
    label: &'static str,
    ipt: Option<IPTables>,
    action: Action,
    /// Bans we put in the chain, so adds are idempotent and inserts go just
    /// before the final RETURN.
    known: HashSet<IpAddr>,
}

pub struct ChainBackend {
    settings: ChainSettings,
    v4: Family,
    v6: Family,
    pending: Vec<(IpAddr, bool)>,
}

fn err(what: String) -> impl FnOnce(Box<dyn std::error::Error>) -> FirewallError {
    move |e| FirewallError::Command {
        what,
        detail: e.to_string().trim().to_string(),
    }
}

/// An `IPTables` for the binary `dir/name`, checked to run.
fn open(dir: &str, name: &str) -> Result<IPTables, FirewallError> {
    let cmd = if dir.is_empty() {
        name.to_string()
    } else {
        Path::new(dir).join(name).to_string_lossy().into_owned()
    };
    let unavailable = |detail: String| FirewallError::Unavailable {
        tool: cmd.clone(),
        detail,
    };
    let out = Command::new(&cmd)
        .arg("--version")
        .output()
        .map_err(|e| unavailable(e.to_string()))?;
    if !out.status.success() {
        return Err(unavailable(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    // The crate wants a 'static command name; one per family per run.
    let cmd: &'static str = Box::leak(cmd.into_boxed_str());
    Ok(IPTables {
        cmd,
        has_check: true,
        has_wait: true,
        is_numeric: true,
    })
}

impl ChainBackend {
    pub fn new(settings: ChainSettings) -> Self {
        let family = |label, action| Family {
            label,
            ipt: None,
            action,
            known: HashSet::new(),
        };
        ChainBackend {
            v4: family("iptables", settings.action_v4.clone()),
            v6: family("ip6tables", settings.action_v6.clone()),
            settings,
            pending: Vec::new(),
        }
    }

    fn family(&mut self, ip: &IpAddr) -> &mut Family {
        if ip.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        }
    }

    fn jump_rule(&self) -> String {
        format!("{} -j {}", self.settings.scope, self.settings.chain)
    }

    fn init_family(&self, fam: &mut Family) -> Result<(), FirewallError> {
        let ipt = open(&self.settings.path, fam.label)?;
        let chain = &self.settings.chain;
        let exists = ipt
            .chain_exists(TABLE, chain)
            .map_err(err(format!("{} -S {chain}", fam.label)))?;
        if exists {
            let stale = list_rules(&ipt, chain)
                .map(|rules| rules.iter().filter(|r| r.contains(" -s ")).count())
                .unwrap_or(0);
            ipt.flush_chain(TABLE, chain)
                .map_err(err(format!("{} -F {chain}", fam.label)))?;
            tracing::info!(
                "CHAIN => {chain} taken over ({}, {stale} old rules flushed)",
                fam.label
            );
        } else {
            ipt.new_chain(TABLE, chain)
                .map_err(err(format!("{} -N {chain}", fam.label)))?;
            tracing::info!("CHAIN => {chain} created ({})", fam.label);
        }
        ipt.append(TABLE, chain, "-j RETURN")
            .map_err(err(format!("{} -A {chain} -j RETURN", fam.label)))?;
        let jump = self.jump_rule();
        // Exactly one jump, at the top of INPUT.
        ipt.delete_all(TABLE, HOOK, &jump)
            .map_err(err(format!("{} -D {HOOK} {jump}", fam.label)))?;
        ipt.insert(TABLE, HOOK, &jump, 1)
            .map_err(err(format!("{} -I {HOOK} 1 {jump}", fam.label)))?;
        fam.known.clear();
        fam.ipt = Some(ipt);
        Ok(())
    }

    fn ban_rule(fam: &Family, ip: IpAddr) -> String {
        format!("-s {ip} -j {}", fam.action)
    }

    fn apply(&mut self, ip: IpAddr, add: bool) -> Result<(), String> {
        let chain = self.settings.chain.clone();
        let fam = self.family(&ip);
        let rule = Self::ban_rule(fam, ip);
        let Some(ipt) = fam.ipt.as_ref() else {
            return Err(format!("{} is not available", fam.label));
        };
        if add {
            if fam.known.contains(&ip) {
                return Ok(());
            }
            // Just before the final RETURN; if the chain drifted, at the top.
            let pos = fam.known.len() as i32 + 1;
            ipt.insert(TABLE, &chain, &rule, pos)
                .or_else(|_| ipt.insert(TABLE, &chain, &rule, 1))
                .map_err(|e| {
                    format!("{} -I {chain} {rule}: {}", fam.label, e.to_string().trim())
                })?;
            fam.known.insert(ip);
        } else {
            let was_known = fam.known.remove(&ip);
            if let Err(e) = ipt.delete(TABLE, &chain, &rule)
                && was_known
            {
                return Err(format!(
                    "{} -D {chain} {rule}: {}",
                    fam.label,
                    e.to_string().trim()
                ));
            }
        }
        Ok(())
    }
}

impl Backend for ChainBackend {
    fn name(&self) -> &'static str {
        "chain"
    }

    fn init(&mut self) -> Result<(), FirewallError> {
        let mut v4 = std::mem::replace(
            &mut self.v4,
            Family {
                label: "iptables",
                ipt: None,
                action: Action::Drop,
                known: HashSet::new(),
            },
        );
        let r4 = self.init_family(&mut v4);
        self.v4 = v4;
        r4?;
        let mut v6 = std::mem::replace(
            &mut self.v6,
            Family {
                label: "ip6tables",
                ipt: None,
                action: Action::Drop,
                known: HashSet::new(),
            },
        );
        if let Err(e) = self.init_family(&mut v6) {
            tracing::warn!("CHAIN => IPv6 bans disabled: {e}");
        }
        self.v6 = v6;
        Ok(())
    }

    fn add(&mut self, ip: IpAddr, _timeout: Duration) {
        self.pending.push((ip, true));
    }

    fn delete(&mut self, ip: IpAddr) {
        self.pending.push((ip, false));
    }

    fn commit(&mut self) -> Result<(), FirewallError> {
        let mut failures = Vec::new();
        for (ip, add) in std::mem::take(&mut self.pending) {
            if let Err(e) = self.apply(ip, add) {
                failures.push((ip, e));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(FirewallError::Elements(failures))
        }
    }

    fn list(&mut self) -> Result<Vec<IpAddr>, FirewallError> {
        let chain = self.settings.chain.clone();
        let mut out = Vec::new();
        for fam in [&mut self.v4, &mut self.v6] {
            let Some(ipt) = fam.ipt.as_ref() else {
                continue;
            };
            let rules = list_rules(ipt, &chain)?;
            let ips: Vec<IpAddr> = rules.iter().filter_map(|r| parse_source(r)).collect();
            fam.known = ips.iter().copied().collect();
            out.extend(ips);
        }
        Ok(out)
    }

    fn repair(&mut self) -> Result<Vec<String>, FirewallError> {
        let chain = self.settings.chain.clone();
        let jump = self.jump_rule();
        let mut repaired = Vec::new();
        for fam in [&mut self.v4, &mut self.v6] {
            let Some(ipt) = fam.ipt.as_ref() else {
                continue;
            };
            let label = fam.label;
            let fail = |what: &str| err(format!("{label} {what}"));
            let exists = ipt.chain_exists(TABLE, &chain).map_err(fail("-L"))?;
            if !exists {
                ipt.new_chain(TABLE, &chain).map_err(fail("-N"))?;
                fam.known.clear();
                repaired.push(format!("{label} chain {chain}"));
            }
            let rules = list_rules(ipt, &chain)?;
            if rules.last().map(|r| r.trim()) != Some(format!("-A {chain} -j RETURN").as_str()) {
                ipt.delete_all(TABLE, &chain, "-j RETURN")
                    .map_err(fail("-D RETURN"))?;
                ipt.append(TABLE, &chain, "-j RETURN")
                    .map_err(fail("-A RETURN"))?;
                repaired.push(format!("{label} RETURN rule"));
            }
            if !ipt.exists(TABLE, HOOK, &jump).map_err(fail("-C INPUT"))? {
                ipt.insert(TABLE, HOOK, &jump, 1)
                    .map_err(fail("-I INPUT"))?;
                repaired.push(format!("{label} INPUT jump"));
            }
        }
        Ok(repaired)
    }

    fn shutdown(&mut self) -> Result<(), FirewallError> {
        let chain = self.settings.chain.clone();
        let jump = self.jump_rule();
        let mut first_error = None;
        for fam in [&mut self.v4, &mut self.v6] {
            let Some(ipt) = fam.ipt.take() else {
                continue;
            };
            let steps: [(&str, IptResult); 3] = [
                ("-D INPUT jump", ipt.delete_all(TABLE, HOOK, &jump)),
                ("-F", ipt.flush_chain(TABLE, &chain)),
                ("-X", ipt.delete_chain(TABLE, &chain)),
            ];
            for (what, result) in steps {
                if let Err(e) = result {
                    let e = FirewallError::Command {
                        what: format!("{} {what} {chain}", fam.label),
                        detail: e.to_string().trim().to_string(),
                    };
                    tracing::error!("CHAIN => {e}");
                    first_error.get_or_insert(e);
                }
            }
            fam.known.clear();
            tracing::info!("CHAIN => {chain} erased ({})", fam.label);
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// `iptables -S chain`, failing on a non-zero exit (the crate's `list`
/// ignores the exit status and, in numeric mode, passes `-n`, which `-S`
/// rejects).
fn list_rules(ipt: &IPTables, chain: &str) -> Result<Vec<String>, FirewallError> {
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
fn parse_source(rule: &str) -> Option<IpAddr> {
    let mut words = rule.split_whitespace();
    words.find(|w| *w == "-s")?;
    let src = words.next()?;
    let addr = src.split('/').next()?;
    addr.parse().ok()
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
    }
}
