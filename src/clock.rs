//! Wall-clock time in whole seconds, injectable so tests can advance ban timers
//! instead of sleeping.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// Seconds since the Unix epoch. Ban expiries are stored and persisted in this
/// unit (the original SIPban's dump uses it too).
pub type UnixTime = u64;

/// Source of "now" for ban expiry. `System` follows the real clock; `Manual`
/// only moves when a test calls [`Clock::advance`].
#[derive(Clone, Debug)]
pub struct Clock(Inner);

#[derive(Clone, Debug)]
enum Inner {
    System,
    Manual(Arc<watch::Sender<UnixTime>>),
}

/// Longest single sleep of the system clock: a wall-clock jump (NTP step,
/// suspend) is noticed within this time instead of after the whole ban.
const MAX_SLEEP: Duration = Duration::from_secs(60);

impl Clock {
    pub fn system() -> Self {
        Clock(Inner::System)
    }

    /// A clock that stands still at `start` until advanced.
    pub fn manual(start: UnixTime) -> Self {
        Clock(Inner::Manual(Arc::new(watch::Sender::new(start))))
    }

    pub fn now(&self) -> UnixTime {
        match &self.0 {
            Inner::System => system_now_millis() / 1000,
            Inner::Manual(tx) => *tx.borrow(),
        }
    }

    /// Milliseconds, for the detector's sliding windows (a manual clock has
    /// whole seconds).
    pub fn now_ms(&self) -> u64 {
        match &self.0 {
            Inner::System => system_now_millis(),
            Inner::Manual(tx) => tx.borrow().saturating_mul(1000),
        }
    }

    /// Moves a manual clock forward; a no-op on the system clock.
    pub fn advance(&self, secs: u64) {
        if let Inner::Manual(tx) = &self.0 {
            tx.send_modify(|now| *now += secs);
        }
    }

    /// Sets a manual clock (replay uses the capture's event times); a no-op on
    /// the system clock. Time never goes backwards.
    pub fn set(&self, to: UnixTime) {
        if let Inner::Manual(tx) = &self.0 {
            tx.send_modify(|now| *now = (*now).max(to));
        }
    }

    /// Completes once `now() >= deadline`.
    pub async fn sleep_until(&self, deadline: UnixTime) {
        match &self.0 {
            Inner::System => loop {
                let now_ms = system_now_millis();
                let due_ms = deadline.saturating_mul(1000);
                if now_ms >= due_ms {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(due_ms - now_ms).min(MAX_SLEEP)).await;
            },
            Inner::Manual(tx) => {
                let mut rx = tx.subscribe();
                // The sender lives as long as `self`, so this cannot fail.
                let _ = rx.wait_for(|now| *now >= deadline).await;
            }
        }
    }
}

fn system_now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `[YYYY-MM-DD HH:MM:SS]` in local time, the original SIPban's stamp for log
/// lines and ban listings.
pub fn stamp(t: UnixTime) -> String {
    use chrono::{Local, TimeZone};
    match Local.timestamp_opt(t as i64, 0).single() {
        Some(dt) => dt.format("[%Y-%m-%d %H:%M:%S]").to_string(),
        None => format!("[@{t}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_on_advance() {
        let clock = Clock::manual(1000);
        let c2 = clock.clone();
        let sleeper = tokio::spawn(async move { c2.sleep_until(1010).await });
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(9);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(1);
        sleeper.await.unwrap();
        assert_eq!(clock.now(), 1010);
    }

    #[test]
    fn set_never_goes_backwards() {
        let clock = Clock::manual(50);
        clock.set(40);
        assert_eq!(clock.now(), 50);
        clock.set(60);
        assert_eq!(clock.now(), 60);
    }
}
