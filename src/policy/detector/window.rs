//! Time inside the sliding windows: u32 millisecond ticks counted from a
//! detector epoch (4 bytes a time instead of 8), and the two window shapes.
//!
//! A tick is exact to the millisecond. Before the count would leave u32
//! range (about 49 days after the epoch), the epoch moves forward so that
//! the longest window still fits whole; times older than that can count in
//! no window any more and become [`NONE`].

/// Milliseconds since the detector's epoch, plus one; 0 is [`NONE`].
pub(super) type Tick = u32;

/// No event (or one older than every window).
pub(super) const NONE: Tick = 0;

/// Age of `then` at `now`; a time in the future (the clock stepped back)
/// is "just now".
pub(super) fn age(now: Tick, then: Tick) -> u32 {
    now.saturating_sub(then)
}

/// Maps wall-clock milliseconds to ticks.
#[derive(Debug, Default)]
pub(super) struct Epoch {
    /// Wall-clock ms of tick 1; set by the first event.
    base: Option<u64>,
    last: Tick,
}

impl Epoch {
    /// The tick of `now_ms`, and by how much every stored tick must be
    /// lowered first when the epoch had to move (`keep_ms`: the longest
    /// window, whose times must survive the move).
    pub(super) fn tick(&mut self, now_ms: u64, keep_ms: u32) -> (Tick, Option<u32>) {
        let base = *self.base.get_or_insert(now_ms);
        let elapsed = now_ms.saturating_sub(base);
        let mut shift = None;
        let tick = match u32::try_from(elapsed.saturating_add(1)) {
            Ok(t) if t < u32::MAX => t,
            _ => {
                let new_base = now_ms.saturating_sub(u64::from(keep_ms));
                let delta = new_base.saturating_sub(base);
                self.base = Some(new_base);
                shift = Some(u32::try_from(delta).unwrap_or(u32::MAX));
                keep_ms.saturating_add(1)
            }
        };
        self.last = tick;
        (tick, shift)
    }

    /// The tick of the latest event (for decisions made without one, such
    /// as evictions on a reconfigure).
    pub(super) fn last(&self) -> Tick {
        self.last
    }
}

/// Lowers a stored tick after the epoch moved by `delta`.
pub(super) fn shift(t: &mut Tick, delta: u32) {
    *t = t.saturating_sub(delta);
}

/// The failure threshold. `ring` holds the previous `max_failures - 1`
/// failure times, oldest first; with the one at `now` they reach the
/// threshold if the oldest is less than `window_ms` old. `now` then takes
/// its place. An empty ring (`max_failures = 1`) is always reached.
pub(super) fn threshold_reached(ring: &mut [Tick], now: Tick, window_ms: u32) -> bool {
    let reached = match ring.first() {
        None => true,
        Some(&oldest) => oldest != NONE && age(now, oldest) < window_ms,
    };
    if !ring.is_empty() {
        ring.copy_within(1.., 0);
        if let Some(last) = ring.last_mut() {
            *last = now;
        }
    }
    reached
}

/// The ChallengeSent flood: more than `count` within `window_ms`. `times`
/// holds only the times still inside the window (at most `count`), so a
/// source that challenges now and then keeps one or two.
pub(super) fn flood_reached(
    times: &mut Vec<Tick>,
    now: Tick,
    count: usize,
    window_ms: u32,
) -> bool {
    expire(times, now, window_ms);
    let reached = times.len() >= count;
    times.push(now);
    if times.len() > count {
        let extra = times.len() - count;
        times.drain(..extra);
    }
    reached
}

/// Drops the times at least `window_ms` old from the front.
pub(super) fn expire(times: &mut Vec<Tick>, now: Tick, window_ms: u32) {
    let stale = times
        .iter()
        .take_while(|&&t| t == NONE || age(now, t) >= window_ms)
        .count();
    times.drain(..stale);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_strictly_within() {
        // max_failures = 3: two previous times.
        let mut ring = [NONE; 2];
        assert!(!threshold_reached(&mut ring, 1, 1000));
        assert!(!threshold_reached(&mut ring, 1001, 1000));
        // 1, 1001, 2001: the first is exactly 2000 old, not within 1000.
        assert!(!threshold_reached(&mut ring, 2000, 1000));
        assert_eq!(ring, [1001, 2000]);
        assert!(threshold_reached(&mut ring, 2000, 1000));
        assert!(threshold_reached(&mut [], 5, 1));
    }

    #[test]
    fn flood_keeps_only_the_window() {
        let mut t = Vec::new();
        for i in 0..5 {
            assert!(!flood_reached(&mut t, 1 + i * 1000, 2, 1000));
            assert_eq!(t.len(), 1, "one a second: only the latest is inside");
        }
        assert!(!flood_reached(&mut t, 4500, 2, 1000));
        assert!(flood_reached(&mut t, 4999, 2, 1000));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn the_epoch_moves_and_keeps_the_longest_window() {
        let mut e = Epoch::default();
        assert_eq!(e.tick(5_000, 60_000), (1, None));
        assert_eq!(e.tick(5_001, 60_000), (2, None));
        // Before the epoch (clock stepped back): tick 1, "just now".
        assert_eq!(e.tick(10, 60_000), (1, None));
        let near = 5_000 + u64::from(u32::MAX) - 2;
        assert_eq!(e.tick(near, 60_000), (u32::MAX - 1, None));
        let (t, shifted) = e.tick(near + 1, 60_000);
        assert_eq!(t, 60_001);
        let delta = shifted.unwrap_or_default();
        // A time 59 999 ms before keeps its age; older ones are gone.
        let mut recent = u32::MAX - 59_999;
        shift(&mut recent, delta);
        assert_eq!(age(t, recent), 60_000 - 1);
        let mut old = 2;
        shift(&mut old, delta);
        assert_eq!(old, NONE);
        // Years later in one step: everything goes.
        let (t, shifted) = e.tick(near + 10 * 365 * 86_400_000, 60_000);
        assert_eq!(t, 60_001);
        assert_eq!(shifted, Some(u32::MAX));
    }
}
