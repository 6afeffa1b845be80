//! Writes the `dump` target's seed: a real dump (`persist::write_rows`)
//! with bans, a detector history and a journal number.
//! `cargo afl build --release --example seed_dump && target/release/examples/seed_dump OUT`

use std::net::IpAddr;
use std::path::PathBuf;

use sipban::event::{EventKind, SecurityEvent};
use sipban::policy::detector::{Detector, DetectorConfig};

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).expect("usage: seed_dump OUT"));
    let mut detector = Detector::new(DetectorConfig::recommended()).expect("valid");
    let now_ms = 1_764_600_000_000;
    for (i, ip) in ["203.0.113.5", "2001:db8::7", "198.51.100.9"]
        .iter()
        .enumerate()
    {
        for n in 0..12u64 {
            let ev = SecurityEvent {
                kind: EventKind::InvalidPassword,
                service: "PJSIP".into(),
                account: format!("{}", 100 + n),
                source: ip.parse().expect("address"),
                port: 5060,
                transport: Some("UDP".into()),
                event_time: None,
            };
            detector.observe(&ev, now_ms + (i as u64) * 1000 + n);
        }
    }
    let history = serde_json::to_string(&detector.history()).expect("history");
    let rows: Vec<(IpAddr, u64, &str, u32)> = vec![
        (
            "203.0.113.5".parse().expect("ip"),
            1_764_603_600,
            "Invalid Password",
            1,
        ),
        (
            "2001:db8::7".parse().expect("ip"),
            1_764_607_200,
            "enumeration: 11 accounts in 10m",
            2,
        ),
        (
            "198.51.100.9".parse().expect("ip"),
            1_764_690_000,
            "reason with \"quotes\", é",
            3,
        ),
    ];
    sipban::bans::persist::write_rows(&out, rows.into_iter(), 1_764_600_100, Some(&history), 3)
        .expect("dump written");
}
