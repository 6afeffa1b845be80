//! Crash-safety soak: the real binary, `kill -9` 20 times per backend at
//! rotating points of a storm (the first ban, mid-storm, after the dump),
//! each followed by a restart and the checks of tests/crash_safety.rs.
//! Prints per backend: rounds, bans logged, lost, stale, duplicated, and
//! the restart time (restore + takeover) as the ban count grows. Root
//! needed; everything runs in private network namespaces.
//!
//! `cargo bench --bench crash_soak` runs 20 kills per backend (storms of
//! 2,000 sources; 200 for the chain backend); without `--bench` (as under
//! `cargo test --all-targets`) it runs 1 kill per backend.

#[path = "../tests/crash/mod.rs"]
mod crash;
#[path = "../tests/netns/mod.rs"]
mod netns;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use crash::{KillAt, Kind, Pbx};

fn soak(kind: Kind, kills: usize, storm: usize) -> bool {
    let handle = std::thread::spawn(move || {
        netns::runtime().block_on(async move {
            let mut pbx = Pbx::new(kind).await;
            pbx.start().await;
            let (mut lost, mut stale, mut dup) = (0, 0, 0);
            let mut restarts: Vec<Duration> = Vec::new();
            let mut logged = 0;
            let points = [KillAt::FirstBan, KillAt::MidStorm, KillAt::After];
            for i in 0..kills {
                let r = pbx.round(storm, points[i % points.len()]).await;
                lost += r.lost.len();
                stale += r.stale.len();
                dup += r.duplicates.len();
                logged = r.logged;
                restarts.push(r.restart);
            }
            pbx.term();
            let max = restarts.iter().max().copied().unwrap_or_default();
            let last = restarts.last().copied().unwrap_or_default();
            println!(
                "{:<10} {kills:>3} kills   {logged:>7} bans logged   lost {lost}   stale {stale}   duplicated {dup}   restart last {:.2} s, max {:.2} s",
                kind.name(),
                last.as_secs_f64(),
                max.as_secs_f64()
            );
            lost == 0 && stale == 0 && dup == 0
        })
    });
    handle.join().unwrap_or(false)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (kills, storm, chain_storm) = if full { (20, 2000, 200) } else { (1, 200, 50) };
    println!(
        "crash soak: kill -9 at the first ban / mid-storm / after the dump, restart, check ({} kills per backend)",
        kills
    );
    let mut ok = true;
    ok &= soak(Kind::Nftables, kills, storm);
    ok &= soak(Kind::Ipset, kills, storm);
    ok &= soak(Kind::Chain, kills, chain_storm);
    if !ok {
        eprintln!("crash soak: a ban was lost, stale or duplicated");
        std::process::exit(1);
    }
}
