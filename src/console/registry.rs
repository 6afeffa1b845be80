//! The console's session slots. The cap bounds what the console holds, but
//! a full console must not lock the administrator out: when every slot is
//! taken, the session idle the longest makes room, and sessions that have
//! not logged in go first. Only a session in the middle of a command is
//! never closed for room; when all are, the newcomer is turned away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Sessions held at once.
pub const MAX_SESSIONS: usize = 64;

/// Every session slot of one console.
#[derive(Debug)]
pub struct Registry {
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    slots: HashMap<u64, Slot>,
}

#[derive(Debug)]
struct Slot {
    /// Waiting for input since then; `None` while a command runs.
    idle_since: Option<Instant>,
    logged_in: bool,
    close: CancellationToken,
}

/// Every slot is running a command.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

impl Registry {
    pub fn new(cap: usize) -> Arc<Registry> {
        Arc::new(Registry {
            cap: cap.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// A slot for a new session, closing the longest-idle one when all are
    /// taken. The new session starts idle and not logged in.
    pub fn admit(self: &Arc<Self>) -> Result<Seat, Full> {
        let mut inner = self.lock();
        if inner.slots.len() >= self.cap {
            let victim = inner
                .slots
                .iter()
                .filter_map(|(&id, s)| s.idle_since.map(|since| ((s.logged_in, since), id)))
                .min()
                .map(|(_, id)| id);
            let slot = victim.and_then(|id| inner.slots.remove(&id)).ok_or(Full)?;
            slot.close.cancel();
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let close = CancellationToken::new();
        inner.slots.insert(
            id,
            Slot {
                idle_since: Some(Instant::now()),
                logged_in: false,
                close: close.clone(),
            },
        );
        Ok(Seat {
            id,
            registry: Arc::clone(self),
            close,
        })
    }

    /// Sessions holding a slot.
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the slot of `id`; false when it was taken away.
    fn update(&self, id: u64, f: impl FnOnce(&mut Slot)) -> bool {
        match self.lock().slots.get_mut(&id) {
            Some(slot) => {
                f(slot);
                true
            }
            None => false,
        }
    }
}

/// One session's slot, given back on drop.
#[derive(Debug)]
pub struct Seat {
    id: u64,
    registry: Arc<Registry>,
    close: CancellationToken,
}

impl Seat {
    /// Waiting for input from now on: the slot may be given away.
    pub fn idle(&self) {
        self.registry
            .update(self.id, |s| s.idle_since = Some(Instant::now()));
    }

    /// A command runs: the slot is kept until [`idle`](Self::idle). False
    /// when the slot was already given away (the session must close).
    pub fn busy(&self) -> bool {
        self.registry.update(self.id, |s| s.idle_since = None)
    }

    pub fn logged_in(&self) {
        self.registry.update(self.id, |s| s.logged_in = true);
    }

    /// Cancelled when the slot was given to a newcomer.
    pub fn closed(&self) -> &CancellationToken {
        &self.close
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.registry.lock().slots.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_longest_idle_session_makes_room() {
        let reg = Registry::new(3);
        let a = reg.admit().unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let b = reg.admit().unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let c = reg.admit().unwrap();
        // `a` ran a command a moment ago: `b` is now the longest idle.
        assert!(a.busy());
        a.idle();
        let d = reg.admit().unwrap();
        assert!(b.closed().is_cancelled());
        assert!(!a.closed().is_cancelled() && !c.closed().is_cancelled());
        assert!(!b.busy(), "an evicted seat is gone");
        assert_eq!(reg.len(), 3);
        drop(b);
        assert_eq!(reg.len(), 3);
        drop(d);
        assert_eq!(reg.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_not_logged_in_go_first_and_busy_ones_never() {
        let reg = Registry::new(2);
        let admin = reg.admit().unwrap();
        admin.logged_in();
        tokio::time::advance(Duration::from_secs(1)).await;
        let stranger = reg.admit().unwrap();
        let _newcomer = reg.admit().unwrap();
        assert!(stranger.closed().is_cancelled());
        assert!(!admin.closed().is_cancelled());

        let reg = Registry::new(1);
        let working = reg.admit().unwrap();
        assert!(working.busy());
        assert_eq!(reg.admit().unwrap_err(), Full);
        working.idle();
        assert!(reg.admit().is_ok());
    }
}
