//! Folding queued changes: an add then a delete of the same address cancel
//! out, repeated adds keep the longest timeout, order of first appearance
//! is kept.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// Net effect of the queued changes to one IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Net {
    Add(Duration),
    Delete,
    /// Deleted then added again: present before and after, new timeout.
    Readd(Duration),
}

/// Folds queued adds/deletes: an add then a delete of the same IP cancel; a
/// repeated add keeps the longest timeout. Order of first appearance is kept.
#[derive(Default)]
pub(super) struct Batch {
    order: Vec<IpAddr>,
    net: HashMap<IpAddr, Net>,
}

impl Batch {
    pub(super) fn push_add(&mut self, ip: IpAddr, t: Duration) {
        let next = match self.net.get(&ip) {
            None => Net::Add(t),
            Some(Net::Add(old)) => Net::Add((*old).max(t)),
            Some(Net::Delete) => Net::Readd(t),
            Some(Net::Readd(old)) => Net::Readd((*old).max(t)),
        };
        self.set(ip, Some(next));
    }

    pub(super) fn push_refresh(&mut self, ip: IpAddr, t: Duration) {
        let next = match self.net.get(&ip) {
            Some(Net::Add(old)) => Net::Add((*old).max(t)),
            Some(Net::Readd(old)) => Net::Readd((*old).max(t)),
            None | Some(Net::Delete) => Net::Readd(t),
        };
        self.set(ip, Some(next));
    }

    pub(super) fn push_delete(&mut self, ip: IpAddr) {
        let next = match self.net.get(&ip) {
            Some(Net::Add(_)) => None,
            _ => Some(Net::Delete),
        };
        self.set(ip, next);
    }

    fn set(&mut self, ip: IpAddr, net: Option<Net>) {
        match net {
            Some(n) => {
                if self.net.insert(ip, n).is_none() {
                    self.order.push(ip);
                }
            }
            None => {
                self.net.remove(&ip);
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.net.len()
    }

    /// The folded changes in order.
    pub(super) fn drain(&mut self) -> Vec<(IpAddr, Net)> {
        let mut net = std::mem::take(&mut self.net);
        std::mem::take(&mut self.order)
            .into_iter()
            .filter_map(|ip| net.remove(&ip).map(|n| (ip, n)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn add_then_delete_cancels_and_longest_add_wins() {
        let mut b = Batch::default();
        b.push_add(ip("192.0.2.1"), Duration::from_secs(10));
        b.push_add(ip("192.0.2.2"), Duration::from_secs(10));
        b.push_delete(ip("192.0.2.1"));
        b.push_add(ip("192.0.2.2"), Duration::from_secs(30));
        b.push_add(ip("192.0.2.2"), Duration::from_secs(20));
        b.push_delete(ip("192.0.2.3"));
        b.push_add(ip("192.0.2.3"), Duration::from_secs(5));
        assert_eq!(
            b.drain(),
            vec![
                (ip("192.0.2.2"), Net::Add(Duration::from_secs(30))),
                (ip("192.0.2.3"), Net::Readd(Duration::from_secs(5))),
            ]
        );
        assert_eq!(b.len(), 0);
    }
}
