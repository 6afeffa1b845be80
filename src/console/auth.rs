//! The console login (`[control] secret`). Until a session has logged in,
//! only `login`, `help` and `quit` run; a few wrong secrets close it. The
//! comparison takes a time that depends on the length of what was tried,
//! never on the secret, so timing tells an attacker nothing about it.

use subtle::ConstantTimeEq;

use super::command::Command;
use crate::ami::Secret;

/// Failed logins that close the session.
pub const MAX_LOGIN_FAILURES: u32 = 3;

/// One session's login state.
#[derive(Debug)]
pub struct Auth<'a> {
    secret: Option<&'a Secret>,
    logged_in: bool,
    failures: u32,
}

/// What a `login` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Login {
    Accepted,
    /// No secret is configured: nothing to log in to.
    NotNeeded,
    AlreadyIn,
    /// Wrong; this many tries are left.
    Refused {
        left: u32,
    },
    /// Wrong for the last time: the session closes.
    Exhausted,
}

impl<'a> Auth<'a> {
    pub fn new(secret: Option<&'a Secret>) -> Self {
        Auth {
            secret,
            logged_in: false,
            failures: 0,
        }
    }

    /// True while commands other than login, help and quit are refused.
    pub fn required(&self) -> bool {
        self.secret.is_some() && !self.logged_in
    }

    /// Whether `cmd` may run now. A line that is no command gets its own
    /// error, which tells nothing about the daemon.
    pub fn allows(&self, cmd: &Command) -> bool {
        !self.required()
            || matches!(
                cmd,
                Command::Login(_)
                    | Command::Help
                    | Command::Quit
                    | Command::Nothing
                    | Command::Error(_)
            )
    }

    pub fn login(&mut self, tried: &Secret) -> Login {
        let Some(secret) = self.secret else {
            return Login::NotNeeded;
        };
        if self.logged_in {
            return Login::AlreadyIn;
        }
        if matches(secret.expose().as_bytes(), tried.expose().as_bytes()) {
            self.logged_in = true;
            return Login::Accepted;
        }
        self.failures += 1;
        match MAX_LOGIN_FAILURES.saturating_sub(self.failures) {
            0 => Login::Exhausted,
            left => Login::Refused { left },
        }
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// `secret == tried`, in time that depends on `tried.len()` only: every
/// byte tried is compared with a byte of the secret (cycled), and the
/// lengths are compared too.
fn matches(secret: &[u8], tried: &[u8]) -> bool {
    let mut same = (secret.len() as u64).ct_eq(&(tried.len() as u64));
    let cycle = secret.len().max(1);
    for (i, b) in tried.iter().enumerate() {
        let s = secret.get(i % cycle).copied().unwrap_or(0);
        same &= b.ct_eq(&s);
    }
    bool::from(same) && !secret.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_exactly() {
        assert!(matches(b"s3cret", b"s3cret"));
        for wrong in [&b"s3cre"[..], b"s3cret!", b"s3cres", b"", b"s3crets3cret"] {
            assert!(!matches(b"s3cret", wrong), "{wrong:?}");
        }
        assert!(!matches(b"", b""), "an empty secret opens nothing");
    }

    #[test]
    fn three_failures_close_and_only_login_help_quit_run_before() {
        let secret = Secret::new("s3cret");
        let mut auth = Auth::new(Some(&secret));
        assert!(auth.required());
        assert!(!auth.allows(&Command::Flush));
        assert!(auth.allows(&Command::Help) && auth.allows(&Command::Quit));
        assert_eq!(auth.login(&Secret::new("a")), Login::Refused { left: 2 });
        assert_eq!(auth.login(&Secret::new("b")), Login::Refused { left: 1 });
        assert_eq!(auth.login(&Secret::new("c")), Login::Exhausted);

        let mut auth = Auth::new(Some(&secret));
        assert_eq!(auth.login(&Secret::new("s3cret")), Login::Accepted);
        assert!(auth.allows(&Command::Flush));
        assert_eq!(auth.login(&Secret::new("s3cret")), Login::AlreadyIn);

        let mut open = Auth::new(None);
        assert!(open.allows(&Command::Flush));
        assert_eq!(open.login(&Secret::new("x")), Login::NotNeeded);
    }
}
