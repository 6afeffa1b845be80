//! Counters for the console's `report`: the last 24 hours in hourly
//! buckets. Bounded: each bucket keeps at most `TRACKED` sources and
//! accounts (later newcomers are only counted in `others`), so a scan from
//! a million addresses cannot grow it. Packets the kernel dropped over the
//! SIP rate limit are counted per source the same way.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

const HOUR_MS: u64 = 3_600_000;
const HOURS: usize = 24;
const TRACKED: usize = 2_000;

#[derive(Default)]
struct Bucket {
    hour: u64,
    events: BTreeMap<String, u64>,
    sources: HashMap<IpAddr, u64>,
    accounts: HashMap<String, u64>,
    others: u64,
    bans: u64,
    /// Packets over the SIP rate limit, per source.
    limited: HashMap<IpAddr, u64>,
    limited_others: u64,
    /// User-Agents of the sensor's events (sanitized, capped by the sensor).
    agents: HashMap<String, u64>,
}

/// What the last 24 hours looked like.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub events: BTreeMap<String, u64>,
    pub top_sources: Vec<(IpAddr, u64)>,
    pub top_accounts: Vec<(String, u64)>,
    pub bans: u64,
    /// Events from sources beyond the tracking bound (counted, not named).
    pub untracked: u64,
    /// Sources with the most packets over the SIP rate limit.
    pub top_limited: Vec<(IpAddr, u64)>,
    /// Such packets from sources beyond the tracking bound.
    pub limited_untracked: u64,
    /// The User-Agents the sensor's events came with, most frequent first.
    pub top_agents: Vec<(String, u64)>,
}

#[derive(Default)]
pub struct Stats {
    buckets: Mutex<VecDeque<Bucket>>,
}

impl Stats {
    fn with_bucket(&self, now_ms: u64, f: impl FnOnce(&mut Bucket)) {
        let hour = now_ms / HOUR_MS;
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.back().is_none_or(|last| last.hour != hour) {
            b.push_back(Bucket {
                hour,
                ..Bucket::default()
            });
            while b.len() > HOURS {
                b.pop_front();
            }
        }
        if let Some(last) = b.back_mut() {
            f(last);
        }
    }

    /// One security event (any kind) from `source` naming `account`.
    pub fn event(&self, now_ms: u64, kind: &str, source: IpAddr, account: &str) {
        self.with_bucket(now_ms, |b| {
            // The hot path of a storm: allocate a key only for a new name.
            match b.events.get_mut(kind) {
                Some(n) => *n += 1,
                None => {
                    b.events.insert(kind.to_string(), 1);
                }
            }
            if b.sources.len() < TRACKED || b.sources.contains_key(&source) {
                *b.sources.entry(source).or_default() += 1;
            } else {
                b.others += 1;
            }
            // The attacker's own text: normalized and bounded as the
            // detector keeps it (an AccountID may be 64 KiB long).
            let Some(account) = crate::policy::detector::normalize_account(account) else {
                return;
            };
            let room = b.accounts.len() < TRACKED;
            match b.accounts.get_mut(account) {
                Some(n) => *n += 1,
                None if room => {
                    b.accounts.insert(account.to_string(), 1);
                }
                None => {}
            }
        });
    }

    /// One sensor event sent with User-Agent `agent` (already sanitized).
    pub fn user_agent(&self, now_ms: u64, agent: &str) {
        self.with_bucket(now_ms, |b| {
            let room = b.agents.len() < TRACKED;
            match b.agents.get_mut(agent) {
                Some(n) => *n += 1,
                None if room => {
                    b.agents.insert(agent.to_string(), 1);
                }
                None => {}
            }
        });
    }

    /// `packets` from `source` dropped over the SIP rate limit.
    pub fn rate_limited(&self, now_ms: u64, source: IpAddr, packets: u64) {
        self.with_bucket(now_ms, |b| {
            if b.limited.len() < TRACKED || b.limited.contains_key(&source) {
                let n = b.limited.entry(source).or_default();
                *n = n.saturating_add(packets);
            } else {
                b.limited_others = b.limited_others.saturating_add(packets);
            }
        });
    }

    pub fn ban(&self, now_ms: u64) {
        self.with_bucket(now_ms, |b| b.bans += 1);
    }

    /// The last 24 hours up to `now_ms`, with the `top` busiest sources and
    /// accounts.
    pub fn report(&self, now_ms: u64, top: usize) -> Report {
        let since = (now_ms / HOUR_MS).saturating_sub(HOURS as u64 - 1);
        let b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut r = Report::default();
        let mut sources: HashMap<IpAddr, u64> = HashMap::new();
        let mut accounts: HashMap<String, u64> = HashMap::new();
        let mut limited: HashMap<IpAddr, u64> = HashMap::new();
        let mut agents: HashMap<String, u64> = HashMap::new();
        for bucket in b.iter().filter(|x| x.hour >= since) {
            for (a, n) in &bucket.agents {
                *agents.entry(a.clone()).or_default() += n;
            }
            for (ip, n) in &bucket.limited {
                let t = limited.entry(*ip).or_default();
                *t = t.saturating_add(*n);
            }
            r.limited_untracked = r.limited_untracked.saturating_add(bucket.limited_others);
            for (k, n) in &bucket.events {
                *r.events.entry(k.clone()).or_default() += n;
            }
            for (ip, n) in &bucket.sources {
                *sources.entry(*ip).or_default() += n;
            }
            for (a, n) in &bucket.accounts {
                *accounts.entry(a.clone()).or_default() += n;
            }
            r.bans += bucket.bans;
            r.untracked += bucket.others;
        }
        let mut s: Vec<_> = sources.into_iter().collect();
        s.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        s.truncate(top);
        let mut a: Vec<_> = accounts.into_iter().collect();
        a.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
        a.truncate(top);
        r.top_sources = s;
        r.top_accounts = a;
        let mut l: Vec<_> = limited.into_iter().collect();
        l.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        l.truncate(top);
        r.top_limited = l;
        let mut g: Vec<_> = agents.into_iter().collect();
        g.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
        g.truncate(top);
        r.top_agents = g;
        r
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Last 24 hours")?;
        writeln!(f, "\nEvents by type:")?;
        if self.events.is_empty() {
            writeln!(f, "  none")?;
        }
        for (k, n) in &self.events {
            writeln!(f, "  {k:<26}{n:>10}")?;
        }
        writeln!(f, "\nTop sources:")?;
        if self.top_sources.is_empty() {
            writeln!(f, "  none")?;
        }
        for (ip, n) in &self.top_sources {
            writeln!(f, "  {:<40}{n:>10}", ip.to_string())?;
        }
        if self.untracked > 0 {
            writeln!(
                f,
                "  (and {} events from sources not tracked individually)",
                self.untracked
            )?;
        }
        writeln!(f, "\nTop targeted accounts:")?;
        if self.top_accounts.is_empty() {
            writeln!(f, "  none")?;
        }
        for (a, n) in &self.top_accounts {
            writeln!(f, "  {a:<40}{n:>10}")?;
        }
        if !self.top_agents.is_empty() {
            writeln!(f, "\nTop User-Agents (SIP sensor):")?;
            for (a, n) in &self.top_agents {
                writeln!(f, "  {a:<40}{n:>10}")?;
            }
        }
        if !self.top_limited.is_empty() || self.limited_untracked > 0 {
            writeln!(f, "\nPackets over the SIP rate limit, by source:")?;
            for (ip, n) in &self.top_limited {
                writeln!(f, "  {:<40}{n:>10}", ip.to_string())?;
            }
            if self.limited_untracked > 0 {
                writeln!(
                    f,
                    "  (and {} from sources not tracked individually)",
                    self.limited_untracked
                )?;
            }
        }
        writeln!(f, "\nBans issued: {}", self.bans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_last_24_hours_only() {
        let s = Stats::default();
        let a: IpAddr = "203.0.113.5".parse().unwrap();
        let b: IpAddr = "2001:db8::5".parse().unwrap();
        s.event(0, "InvalidPassword", a, "1001");
        s.event(HOUR_MS * 30, "InvalidPassword", a, "1001");
        s.event(HOUR_MS * 30, "ChallengeSent", b, "100");
        s.event(HOUR_MS * 31, "ChallengeSent", b, "100");
        s.ban(HOUR_MS * 31);
        let r = s.report(HOUR_MS * 31, 10);
        assert_eq!(r.events["InvalidPassword"], 1, "the event 31 h ago is gone");
        assert_eq!(r.events["ChallengeSent"], 2);
        assert_eq!(r.top_sources, vec![(b, 2), (a, 1)]);
        assert_eq!(r.top_accounts[0], ("100".to_string(), 2));
        assert_eq!(r.bans, 1);
        assert!(r.to_string().contains("Bans issued: 1"));
    }

    #[test]
    fn rate_limit_hits_by_source() {
        let s = Stats::default();
        let a: IpAddr = "203.0.113.5".parse().unwrap();
        let b: IpAddr = "2001:db8::5".parse().unwrap();
        assert!(!s.report(0, 10).to_string().contains("rate limit"));
        s.rate_limited(0, a, 900);
        s.rate_limited(HOUR_MS, a, 100);
        s.rate_limited(HOUR_MS, b, 5);
        let r = s.report(HOUR_MS, 10);
        assert_eq!(r.top_limited, vec![(a, 1000), (b, 5)]);
        let text = r.to_string();
        assert!(
            text.contains("Packets over the SIP rate limit, by source:"),
            "{text}"
        );
        assert!(text.contains("203.0.113.5"), "{text}");
        for i in 0..(TRACKED as u32 + 10) {
            s.rate_limited(HOUR_MS * 2, IpAddr::from(i.to_be_bytes()), 1);
        }
        assert_eq!(s.report(HOUR_MS * 2, 3).limited_untracked, 10);
    }

    #[test]
    fn top_user_agents_of_the_sensor_bounded() {
        let s = Stats::default();
        assert!(!s.report(0, 10).to_string().contains("User-Agents"));
        for _ in 0..3 {
            s.user_agent(0, "friendly-scanner");
        }
        s.user_agent(HOUR_MS, "pytest-sipreg/1.0");
        let r = s.report(HOUR_MS, 10);
        assert_eq!(
            r.top_agents,
            vec![
                ("friendly-scanner".to_string(), 3),
                ("pytest-sipreg/1.0".to_string(), 1)
            ]
        );
        assert!(r.to_string().contains("Top User-Agents (SIP sensor):"));
        for i in 0..(TRACKED + 10) {
            s.user_agent(HOUR_MS * 2, &format!("agent {i}"));
        }
        let b = s.buckets.lock().unwrap();
        assert!(b.back().unwrap().agents.len() <= TRACKED);
    }

    #[test]
    fn a_scan_from_many_sources_stays_bounded() {
        let s = Stats::default();
        for i in 0..100_000u32 {
            s.event(5, "InvalidAccountID", IpAddr::from(i.to_be_bytes()), "x");
        }
        let r = s.report(5, 3);
        assert_eq!(r.events["InvalidAccountID"], 100_000);
        assert_eq!(r.untracked, 100_000 - TRACKED as u64);
        assert_eq!(r.top_sources.len(), 3);
    }

    #[test]
    fn huge_account_names_are_kept_bounded() {
        let s = Stats::default();
        let a: IpAddr = "203.0.113.5".parse().unwrap();
        s.event(5, "InvalidAccountID", a, "sip:100@pbx");
        // An AMI message may carry a 64 KiB AccountID; thousands of them
        // must not cost thousands of times that.
        for i in 0..3000 {
            let name = format!("{i}{}", "é".repeat(30_000));
            s.event(5, "InvalidAccountID", a, &name);
        }
        let r = s.report(5, 3000);
        assert!(r.top_accounts.iter().all(|(n, _)| n.len() <= 64));
        assert!(r.top_accounts.iter().any(|(n, _)| n == "100"));
    }
}
