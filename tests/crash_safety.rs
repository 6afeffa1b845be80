//! `kill -9` at any point of a storm loses no accepted ban, for every
//! firewall backend: the real binary in a private network namespace, a
//! storm from a fake Asterisk (10k sources; the chain backend 500), kills
//! at the first ban (before any dump holds the storm), mid-storm and after
//! the storm is dumped, each followed by a restart. After each restart,
//! every address logged `BLOCK =>` before the kill is banned in the kernel
//! and tracked, once, and nothing in the kernel is untracked. The soak
//! variant with 20 kills per backend is `cargo bench --bench crash_soak`.

mod crash;
mod netns;
mod support;

use crash::{KillAt, Kind, Pbx};

fn kills(kind: Kind, storm: usize) {
    let ns_thread = std::thread::spawn(move || {
        netns::runtime().block_on(async move {
            let mut pbx = Pbx::new(kind).await;
            pbx.start().await;
            for at in [KillAt::FirstBan, KillAt::MidStorm, KillAt::After] {
                let round = pbx.round(storm, at).await;
                assert!(
                    round.ok(),
                    "{kind:?}, kill at {at:?}: {} lost, {} stale, {} duplicated (e.g. {:?} {:?} {:?})\n{}",
                    round.lost.len(),
                    round.stale.len(),
                    round.duplicates.len(),
                    round.lost.first(),
                    round.stale.first(),
                    round.duplicates.first(),
                    pbx.stderr()
                );
                if at == KillAt::FirstBan {
                    assert!(
                        round.in_dump_at_kill < storm,
                        "the kill came after the dump: the round proves nothing"
                    );
                }
                assert!(round.tracked >= round.logged, "{round:?}");
            }
            // The last run stops cleanly and leaves nothing behind.
            pbx.term();
            assert!(pbx.kernel_objects_gone(), "left behind after SIGTERM");
        })
    });
    if let Err(e) = ns_thread.join() {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn nftables_loses_no_ban_to_kill_9() {
    kills(Kind::Nftables, 10_000);
}

#[test]
fn ipset_loses_no_ban_to_kill_9() {
    kills(Kind::Ipset, 10_000);
}

#[test]
fn chain_loses_no_ban_to_kill_9() {
    kills(Kind::Chain, 500);
}
