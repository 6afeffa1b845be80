//! The console's `whois IP`, as the 2024 original has it: RFC 3912 (one
//! query line over TCP, the answer until the server closes). It asks the
//! IANA first, follows its `refer:` line to the regional registry once, and
//! shows that registry's answer. Each exchange has a short deadline and a
//! size cap, and the answer is untrusted text: control characters are
//! replaced and lines the console client would read as its own (an error,
//! the prompt) are withheld.
//!
//! Our own code rather than a crate: the whois crates want a table of
//! servers per TLD, allow a minute per server and read answers unbounded;
//! this is one query, one referral, two deadlines.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The whois port (RFC 3912).
pub const WHOIS_PORT: u16 = 43;

/// Where a lookup starts by default.
pub const IANA: &str = "whois.iana.org";

/// Longest answer read from one server; the rest is cut.
pub const MAX_ANSWER: usize = 64 * 1024;

/// Most answer lines shown.
pub const MAX_LINES: usize = 400;

/// Default deadline of one exchange (connect, query, answer).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Longest host name (RFC 1035).
const MAX_HOST: usize = 253;

/// A whois server: `host[:port]` (`[v6]:port` for an IPv6 literal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhoisServer {
    pub host: String,
    pub port: u16,
}

impl Default for WhoisServer {
    fn default() -> Self {
        WhoisServer {
            host: IANA.into(),
            port: WHOIS_PORT,
        }
    }
}

impl WhoisServer {
    /// `host`, `host:port`, `[v6]:port`, a bare IP, or `whois://host[:port]`
    /// (as some referrals are written).
    pub fn parse(s: &str) -> Result<WhoisServer, String> {
        let s = s.trim();
        let s = s.strip_prefix("whois://").unwrap_or(s);
        let s = s.strip_suffix('/').unwrap_or(s);
        let bad = || format!("{s:?} is not a whois server (HOST or HOST:PORT)");
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(WhoisServer {
                host: ip.to_string(),
                port: WHOIS_PORT,
            });
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (ip, after) = rest.split_once(']').ok_or_else(bad)?;
            ip.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(bad)?),
            };
            (ip, port)
        } else {
            match s.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        let port = match port {
            None => WHOIS_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(bad()),
                Ok(p) => p,
            },
        };
        let host_ok = host.parse::<IpAddr>().is_ok()
            || (!host.is_empty()
                && host.len() <= MAX_HOST
                && !host.starts_with(['-', '.'])
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
        if !host_ok {
            return Err(bad());
        }
        Ok(WhoisServer {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for WhoisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// Where `whois` starts and how long each exchange may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhoisSettings {
    pub server: WhoisServer,
    pub timeout: Duration,
}

impl Default for WhoisSettings {
    fn default() -> Self {
        WhoisSettings {
            server: WhoisServer::default(),
            timeout: TIMEOUT,
        }
    }
}

#[derive(Debug, Error)]
pub enum WhoisError {
    #[error("{server}: no answer within {} s", timeout.as_secs_f32())]
    Timeout {
        server: WhoisServer,
        timeout: Duration,
    },
    #[error("{server}: {source}")]
    Io {
        server: WhoisServer,
        #[source]
        source: std::io::Error,
    },
}

/// One server's answer.
#[derive(Debug)]
pub struct Answer {
    pub server: WhoisServer,
    pub text: String,
    /// Longer than [`MAX_ANSWER`]: `text` is the start of it.
    pub cut: bool,
}

/// Sends `query` to `server` and reads the answer until it closes, within
/// `timeout` and at most [`MAX_ANSWER`] bytes.
pub async fn ask(
    server: &WhoisServer,
    query: &str,
    timeout: Duration,
) -> Result<Answer, WhoisError> {
    let exchange = async {
        let mut stream = TcpStream::connect((server.host.as_str(), server.port)).await?;
        stream.write_all(format!("{query}\r\n").as_bytes()).await?;
        let mut bytes = Vec::new();
        let limit = u64::try_from(MAX_ANSWER).unwrap_or(u64::MAX) + 1;
        (&mut stream).take(limit).read_to_end(&mut bytes).await?;
        Ok::<_, std::io::Error>(bytes)
    };
    let mut bytes = match tokio::time::timeout(timeout, exchange).await {
        Err(_) => {
            return Err(WhoisError::Timeout {
                server: server.clone(),
                timeout,
            });
        }
        Ok(Err(source)) => {
            return Err(WhoisError::Io {
                server: server.clone(),
                source,
            });
        }
        Ok(Ok(b)) => b,
    };
    let cut = bytes.len() > MAX_ANSWER;
    bytes.truncate(MAX_ANSWER);
    Ok(Answer {
        server: server.clone(),
        text: String::from_utf8_lossy(&bytes).into_owned(),
        cut,
    })
}

/// The server an answer refers to (the IANA's `refer:` line), if any.
pub fn referral(answer: &str) -> Option<WhoisServer> {
    answer.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if !key.trim().eq_ignore_ascii_case("refer") {
            return None;
        }
        WhoisServer::parse(value).ok()
    })
}

/// The answer for `ip`: the IANA's (or `settings.server`'s), or the one of
/// the registry it refers to.
pub async fn lookup(settings: &WhoisSettings, ip: IpAddr) -> Result<Lookup, WhoisError> {
    let query = ip.to_string();
    let first = ask(&settings.server, &query, settings.timeout).await?;
    match referral(&first.text).filter(|r| *r != settings.server) {
        None => Ok(Lookup {
            answer: first,
            referred_by: None,
        }),
        Some(registry) => {
            let answer = ask(&registry, &query, settings.timeout).await?;
            Ok(Lookup {
                answer,
                referred_by: Some(settings.server.clone()),
            })
        }
    }
}

/// A lookup's result: the answer shown and who referred to its server.
#[derive(Debug)]
pub struct Lookup {
    pub answer: Answer,
    pub referred_by: Option<WhoisServer>,
}

/// The console's reply, in the original's wording (`WHOIS information:
/// IP`, `No response from WHOIS servers`).
pub fn reply(ip: IpAddr, result: Result<Lookup, WhoisError>) -> String {
    let lookup = match result {
        Ok(l) => l,
        Err(e) => return format!("No response from WHOIS servers: {e}\n"),
    };
    let mut out = format!("WHOIS information: {ip}\n\n");
    let mut shown = 0;
    let mut more = 0;
    for line in lookup.answer.text.lines() {
        let line = printable(line);
        let t = line.trim();
        // Comments and blank lines: the registries' banners and legalese.
        if t.is_empty() || t.starts_with('%') || t.starts_with('#') {
            continue;
        }
        if shown == MAX_LINES {
            more += 1;
            continue;
        }
        shown += 1;
        if t.starts_with(crate::console::PROMPT) || crate::client::is_error_reply(t) {
            out.push_str("  (a line withheld: it reads like a console message)\n");
        } else {
            out.push_str("  ");
            out.push_str(t);
            out.push('\n');
        }
    }
    if shown == 0 {
        out.push_str("  (the answer holds no data)\n");
    }
    if more > 0 {
        out.push_str(&format!("  ... and {more} more lines\n"));
    }
    if lookup.answer.cut {
        out.push_str(&format!(
            "  ... (answer cut at {} KiB)\n",
            MAX_ANSWER / 1024
        ));
    }
    out.push_str(&format!("\nanswered by {}", lookup.answer.server));
    if let Some(by) = &lookup.referred_by {
        out.push_str(&format!(" (referred by {by})"));
    }
    out.push('\n');
    out
}

/// `line` with control characters (an escape sequence, say) replaced.
fn printable(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn server(host: &str, port: u16) -> WhoisServer {
        WhoisServer {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn server_forms() {
        assert_eq!(
            WhoisServer::parse("whois.iana.org"),
            Ok(server("whois.iana.org", 43))
        );
        assert_eq!(
            WhoisServer::parse(" WHOIS.RIPE.NET:4343 "),
            Ok(server("whois.ripe.net", 4343))
        );
        assert_eq!(
            WhoisServer::parse("whois://whois.arin.net/"),
            Ok(server("whois.arin.net", 43))
        );
        assert_eq!(
            WhoisServer::parse("127.0.0.1:4300"),
            Ok(server("127.0.0.1", 4300))
        );
        assert_eq!(WhoisServer::parse("::1"), Ok(server("::1", 43)));
        assert_eq!(WhoisServer::parse("[::1]:4300"), Ok(server("::1", 4300)));
        assert_eq!(server("::1", 4300).to_string(), "[::1]:4300");
        for bad in [
            "",
            "host:0",
            "host:99999",
            "two words",
            "-x",
            "a/b",
            "[::1",
            "[nothost]:43",
            "host:",
            "é.example",
        ] {
            assert!(WhoisServer::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_iana_refer_line_names_the_registry() {
        let iana = "% IANA WHOIS server\n\nrefer:        whois.arin.net\n\ninetnum:      8.0.0.0 - 8.255.255.255\nwhois:        whois.arin.net\n";
        assert_eq!(referral(iana), Some(server("whois.arin.net", 43)));
        assert_eq!(referral("inetnum: 1.0.0.0\n"), None);
        assert_eq!(referral("refer: not a host!\n"), None);
    }

    #[test]
    fn replies_show_the_data_and_withhold_what_reads_like_the_console() {
        let lookup = Lookup {
            answer: Answer {
                server: server("whois.ripe.net", 43),
                text: "% comment\r\n\r\ninetnum: 193.0.0.0 - 193.0.7.255\r\nnetname: RIPE-NCC\x1b[2J\r\nerror: planted\r\nsipban>\r\n".into(),
                cut: true,
            },
            referred_by: Some(WhoisServer::default()),
        };
        let text = reply("193.0.6.139".parse().unwrap(), Ok(lookup));
        assert_eq!(
            text,
            "WHOIS information: 193.0.6.139\n\n  inetnum: 193.0.0.0 - 193.0.7.255\n  \
             netname: RIPE-NCC\u{FFFD}[2J\n  \
             (a line withheld: it reads like a console message)\n  \
             (a line withheld: it reads like a console message)\n  \
             ... (answer cut at 64 KiB)\n\n\
             answered by whois.ripe.net:43 (referred by whois.iana.org:43)\n"
        );
        let err = reply(
            "192.0.2.1".parse().unwrap(),
            Err(WhoisError::Timeout {
                server: WhoisServer::default(),
                timeout: TIMEOUT,
            }),
        );
        assert_eq!(
            err,
            "No response from WHOIS servers: whois.iana.org:43: no answer within 5 s\n"
        );
    }

    proptest! {
        #[test]
        fn hostile_answers_never_panic_and_stay_bounded(text in ".{0,2000}", host in "\\PC{0,40}") {
            let _ = WhoisServer::parse(&host);
            let _ = referral(&text);
            let lookup = Lookup {
                answer: Answer { server: WhoisServer::default(), text: text.clone(), cut: false },
                referred_by: None,
            };
            let out = reply("192.0.2.1".parse().unwrap(), Ok(lookup));
            prop_assert!(out.lines().count() <= MAX_LINES + 8);
            prop_assert!(!out.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
            for line in out.lines().skip(1) {
                prop_assert!(!crate::client::is_error_reply(line), "{line:?}");
                prop_assert!(!line.trim().starts_with(crate::console::PROMPT));
            }
        }
    }
}
