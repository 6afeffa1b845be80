//! The firewall backend the config asks for.

use crate::config::{BackendKind, Config};
use crate::firewall::chain::ChainSettings;
use crate::firewall::{Backend, ChainBackend, DryRun, Hook, IpsetBackend, NftBackend, SetSettings};

/// The backend `[firewall] backend` asks for (`auto`, the default: nftables
/// if `nft` works, else ipset, else chain); the dry-run one with
/// `--dry-run`.
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
    let scope = c.scope();
    tracing::info!(
        "FIREWALL => {kind} backend ([firewall] backend = {}), banning {scope}",
        c.firewall.backend
    );
    let sets = SetSettings {
        bin_dir: dir.clone(),
        table: c.firewall.table.clone(),
        set4: c.firewall.set4.clone(),
        set6: c.firewall.set6.clone(),
        scope: scope.clone(),
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
    let limits = c.limits.clone();
    match kind {
        BackendKind::Nftables => Box::new(NftBackend::new(sets).with_limits(limits)),
        BackendKind::Ipset => Box::new(
            IpsetBackend::new(sets)
                .with_set_type(c.firewall.set_type)
                .with_limits(limits),
        ),
        _ => Box::new(
            ChainBackend::new(ChainSettings {
                path: dir.clone(),
                chain: c.iptables.chain.clone(),
                scope,
                action_v4: c.iptables.rule.clone(),
                action_v6: c.iptables.rule6.clone(),
            })
            .with_limits(limits),
        ),
    }
}
