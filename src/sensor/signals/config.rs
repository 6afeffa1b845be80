//! What the sensor watches for, with the documented defaults.

use std::time::Duration;

/// The scanners' own names for themselves (case-insensitive substrings of
/// the User-Agent): SIPVicious (`friendly-scanner`, `sipvicious`), sipcli,
/// sip-scan, VaxSIPUserAgent, iWar, sundayddr, SIPBUSTER and the PortSIP
/// SDK that toll-fraud kits are built on.
pub const SCANNER_AGENTS: [&str; 9] = [
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "vaxsipuseragent",
    "iwar",
    "sundayddr",
    "sipbuster",
    "portsip voip sdk",
];

/// `[sip]` as the signals need it.
#[derive(Clone, Debug, PartialEq)]
pub struct SignalConfig {
    /// Lowercase substrings of a scanner's User-Agent.
    pub user_agents: Vec<String>,
    /// How long a 401/407 may wait for the success that makes it a good
    /// login (a phone answers a challenge within milliseconds; an
    /// authenticated INVITE is answered by a provisional response at once).
    pub auth_window: Duration,
    /// More requests than this from one source within `request_window` is
    /// a flood (`None`: off).
    pub max_requests: Option<u32>,
    pub request_window: Duration,
    /// The policy's test accounts (`[policy] test_accounts`): a new
    /// REGISTER/INVITE dialog naming one is reported.
    pub test_accounts: Vec<String>,
    /// Sources and dialogs tracked at most (each table); beyond, the
    /// oldest idle ones go first.
    pub max_sources: usize,
}

impl Default for SignalConfig {
    /// 5 s for the answer to a challenge; 200 requests in 10 s (20/s: a
    /// phone sends about one a minute, an office of 50 phones behind one
    /// address a few a second while it calls; svmap, svwar and an INVITE
    /// flood send hundreds).
    fn default() -> Self {
        SignalConfig {
            user_agents: SCANNER_AGENTS.iter().map(|s| s.to_string()).collect(),
            auth_window: Duration::from_secs(5),
            max_requests: Some(200),
            request_window: Duration::from_secs(10),
            test_accounts: vec!["100".into(), "1000".into()],
            max_sources: 100_000,
        }
    }
}

impl SignalConfig {
    /// The scanner name `agent` contains, if any.
    pub fn scanner(&self, agent: &[u8]) -> Option<&str> {
        self.user_agents
            .iter()
            .find(|needle| contains_ignore_case(agent, needle.as_bytes()))
            .map(String::as_str)
    }
}

/// Whether `hay` contains `needle` (lowercase ASCII), ignoring ASCII case.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return false;
    }
    hay.windows(needle.len()).any(|w| {
        w.iter()
            .zip(needle)
            .all(|(a, b)| a.to_ascii_lowercase() == *b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanners_are_found_in_any_case_anywhere_in_the_agent() {
        let c = SignalConfig::default();
        assert_eq!(c.scanner(b"friendly-scanner"), Some("friendly-scanner"));
        assert_eq!(c.scanner(b"SIPVicious 0.3.8"), Some("sipvicious"));
        assert_eq!(
            c.scanner(b"x PortSIP VoIP SDK 11.2"),
            Some("portsip voip sdk")
        );
        assert_eq!(c.scanner(b"Yealink SIP-T46S 66.86.0.15"), None);
        assert_eq!(c.scanner(b""), None);
        assert_eq!(
            c.scanner(&[0xff, 0xfe, b'i', b'W', b'a', b'r']),
            Some("iwar")
        );
    }
}
