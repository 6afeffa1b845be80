//! Every shared capture (tests/fixtures/sip: real Asterisk 20 under real
//! SIPVicious, wrong-password and unknown-user clients, TCP, IPv6 and a
//! legitimate office phone) replayed through the sensor and the policy,
//! alone and together with the AMI stream recorded at the same time: the
//! expected sources banned with the expected reason and User-Agent, the
//! office phone never, and an attempt both sources saw counted once.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sipban::policy::Policy;
use sipban::policy::detector::DetectorConfig;
use sipban::policy::lists::{AddressList, Lists};
use sipban::policy::whitelist::Whitelist;
use sipban::replay::{CaptureInput, ReplayReport, replay_all};
use sipban::sensor::signals::SignalConfig;

const OFFICE: &str = "203.0.113.50";
const DAY: Duration = Duration::from_secs(86_400);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sip")
        .join(name)
}

fn original() -> Policy {
    Policy::new(Whitelist::default(), Vec::new(), DAY)
}

fn threshold(max_failures: u32) -> Policy {
    let lists = Lists {
        allow: AddressList::new(),
        deny: AddressList::new(),
    };
    let config = DetectorConfig {
        max_failures,
        find_time: Duration::from_secs(600),
        ..DetectorConfig::default()
    };
    Policy::with(lists, Vec::new(), config).expect("a valid policy")
}

/// Replays scenario `name`: its capture, and its AMI stream when `ami`.
fn replay(name: &str, ami: bool, policy: &Policy) -> ReplayReport {
    let bytes = std::fs::read(fixture(&format!("{name}.ami"))).expect("the AMI fixture");
    let pcap = fixture(&format!("{name}.pcap"));
    let capture = CaptureInput {
        path: &pcap,
        signals: SignalConfig::default(),
        tls_ports: vec![5061],
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(replay_all(
        ami.then_some(bytes.as_slice()),
        Some(capture),
        policy,
        DAY,
    ))
    .expect("replay")
}

/// Banned source -> (reason, what led to it).
fn bans(r: &ReplayReport) -> BTreeMap<IpAddr, (String, String)> {
    r.banned
        .iter()
        .map(|(ip, reason, why)| (*ip, (reason.clone(), why.clone())))
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A source banned with this reason, led to it by this User-Agent.
type Ban = (&'static str, &'static str, &'static str);

/// Banned as a SIPVicious scanner.
const fn scanner(ip: &'static str) -> Ban {
    (
        ip,
        "scanner User-Agent friendly-scanner",
        "friendly-scanner",
    )
}

/// Banned for its failed logins, sent with this User-Agent.
const fn failed(ip: &'static str, agent: &'static str) -> Ban {
    (ip, "SIP authentication failed", agent)
}

const PYTEST: &str = "pytest-sipreg/1.0";
const GRANDSTREAM: &str = "Grandstream GXP2170 1.0.11.6";

/// Sensor alone: (scenario, [(source, reason, User-Agent)]).
const EXPECTED: &[(&str, &[Ban])] = &[
    (
        "s1-svmap",
        &[scanner("203.0.113.11"), scanner("2001:db8:113::11")],
    ),
    ("s2-svwar", &[scanner("203.0.113.11")]),
    ("s3-svcrack", &[scanner("203.0.113.12")]),
    (
        "s4-wrongpass-unknownuser",
        &[
            failed("203.0.113.13", PYTEST),
            failed("203.0.113.14", PYTEST),
        ],
    ),
    ("s5-office", &[]),
    (
        "s6-mixed",
        &[
            scanner("203.0.113.11"),
            scanner("203.0.113.12"),
            failed("203.0.113.13", PYTEST),
            failed("203.0.113.14", PYTEST),
            scanner("2001:db8:113::11"),
        ],
    ),
    (
        "s8-tcp",
        &[
            failed("203.0.113.13", PYTEST),
            failed("203.0.113.14", GRANDSTREAM),
            failed("2001:db8:113::14", GRANDSTREAM),
        ],
    ),
];

#[test]
fn every_capture_bans_its_attackers_from_the_wire_alone_and_never_the_office() {
    for (name, want) in EXPECTED {
        let r = replay(name, false, &original());
        let got = bans(&r);
        assert_eq!(got.len(), want.len(), "{name}: {r}");
        for (src, reason, agent) in *want {
            let (got_reason, why) = got
                .get(&ip(src))
                .unwrap_or_else(|| panic!("{name}: {src} not banned:\n{r}"));
            assert_eq!(got_reason, reason, "{name}: {src}");
            assert!(why.starts_with("sensor "), "{name}: {src}: {why}");
            assert!(
                why.contains(&format!("User-Agent {agent:?}")),
                "{name}: {src}: {why}"
            );
        }
        assert!(
            !got.contains_key(&ip(OFFICE)),
            "{name}: the office phone:\n{r}"
        );
        let s = r.sensor.expect("sensor figures");
        assert_eq!(s.undecoded, 0, "{name}");
    }
}

#[test]
fn with_the_ami_the_same_sources_are_banned_and_each_attempt_counts_once() {
    for (name, want) in EXPECTED {
        let alone = replay(name, false, &original());
        let both = replay(name, true, &original());
        let a: Vec<IpAddr> = bans(&alone).into_keys().collect();
        let b: Vec<IpAddr> = bans(&both).into_keys().collect();
        assert_eq!(a, b, "{name}:\n{alone}\n{both}");
        assert_eq!(b.len(), want.len(), "{name}");
        if *name != "s5-office" && *name != "s1-svmap" {
            assert!(
                both.duplicates > 0,
                "{name}: no failure was matched to the AMI:\n{both}"
            );
        }
    }
}

/// A threshold between what one source reports and what both would add up
/// to: wan3's five wrong passwords (s4) are 5 ChallengeResponseFailed in
/// the AMI and 5 failures on the wire. At `max_failures = 6` neither bans
/// alone; counted twice (10) they would.
#[test]
fn a_threshold_between_one_source_and_the_sum_is_not_reached_by_both() {
    let wan3 = ip("203.0.113.13");
    let ami_only = {
        let bytes = std::fs::read(fixture("s4-wrongpass-unknownuser.ami")).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(replay_all(Some(&bytes), None, &threshold(6), DAY))
            .unwrap()
    };
    assert!(!bans(&ami_only).contains_key(&wan3), "{ami_only}");
    let sensor_only = replay("s4-wrongpass-unknownuser", false, &threshold(6));
    assert!(!bans(&sensor_only).contains_key(&wan3), "{sensor_only}");
    let both = replay("s4-wrongpass-unknownuser", true, &threshold(6));
    assert!(!bans(&both).contains_key(&wan3), "counted twice:\n{both}");
    assert!(both.duplicates >= 5, "{both}");
    // And at 5 each source alone bans it, and both together too.
    for r in [
        replay("s4-wrongpass-unknownuser", false, &threshold(5)),
        replay("s4-wrongpass-unknownuser", true, &threshold(5)),
    ] {
        assert!(bans(&r).contains_key(&wan3), "{r}");
    }
}

#[test]
fn the_binary_replays_a_capture_and_its_ami_stream_together() {
    let out = Command::new(env!("CARGO_BIN_EXE_sipban"))
        .arg("replay")
        .arg(fixture("s6-mixed.pcap"))
        .arg(fixture("s6-mixed.ami"))
        .output()
        .expect("run sipban");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blocks: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("BLOCK => "))
        .collect();
    assert_eq!(blocks.len(), 5, "{stdout}");
    assert!(!stdout.contains(&format!("BLOCK => {OFFICE} ")), "{stdout}");
    assert!(
        blocks
            .iter()
            .any(|l| l.contains("User-Agent \"friendly-scanner\", REGISTER")),
        "{stdout}"
    );
    assert!(stdout.contains("already reported by the AMI"), "{stdout}");
    // Two captures of one kind are refused, naming the second.
    let out = Command::new(env!("CARGO_BIN_EXE_sipban"))
        .arg("replay")
        .arg(fixture("s1-svmap.pcap"))
        .arg(fixture("s2-svwar.pcap"))
        .output()
        .expect("run sipban");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("two packet captures") && err.contains("s2-svwar.pcap"),
        "{err}"
    );
}
