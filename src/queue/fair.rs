//! The order in which one group's held queries leave the queue: a higher priority first; within
//! one priority, users take turns (one query each per round), and each user's own queries leave
//! in the order they came. So one user's burst of 500 queries delays another user's single query
//! by at most one query per user ahead of it in the round, never by the whole burst.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// One group's waiting queries (their keys), in leaving order.
#[derive(Debug, Default)]
pub struct FairOrder {
    levels: BTreeMap<Reverse<i32>, Level>,
    len: usize,
}

#[derive(Debug, Default)]
struct Level {
    /// Users with waiting queries, in turn order (whose turn is next at the front).
    turns: VecDeque<Arc<str>>,
    /// Each user's waiting queries, oldest first.
    waiting: HashMap<Arc<str>, VecDeque<u64>>,
}

/// Where [`FairOrder::next`] found the query that may leave: its level and its user's turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    priority: i32,
    turn: usize,
    pub key: u64,
}

impl FairOrder {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Add a query at the end of its user's own line.
    pub fn push(&mut self, priority: i32, user: &Arc<str>, key: u64) {
        let level = self.levels.entry(Reverse(priority)).or_default();
        let line = level.waiting.entry(user.clone()).or_insert_with(|| {
            level.turns.push_back(user.clone());
            VecDeque::new()
        });
        line.push_back(key);
        self.len += 1;
    }

    /// Put a query back at the head of its user's line, the user's turn next (a hand-over that
    /// was not taken up).
    pub fn push_front(&mut self, priority: i32, user: &Arc<str>, key: u64) {
        let level = self.levels.entry(Reverse(priority)).or_default();
        match level.waiting.get_mut(user) {
            Some(line) => line.push_front(key),
            None => {
                level.waiting.insert(user.clone(), VecDeque::from([key]));
                level.turns.push_front(user.clone());
            }
        }
        self.len += 1;
    }

    /// The next query that may leave: the highest priority first, users in turn, skipping a
    /// user whose next query `may_start` refuses (a running limit); nothing moves until
    /// [`FairOrder::take`].
    pub fn next(&self, may_start: impl Fn(u64) -> bool) -> Option<Pick> {
        for (Reverse(priority), level) in &self.levels {
            for (turn, user) in level.turns.iter().enumerate() {
                let key = level.waiting.get(user).and_then(|l| l.front().copied());
                if let Some(key) = key.filter(|&k| may_start(k)) {
                    return Some(Pick {
                        priority: *priority,
                        turn,
                        key,
                    });
                }
            }
        }
        None
    }

    /// Take the query [`FairOrder::next`] found: its user's turn passes to the back.
    pub fn take(&mut self, pick: Pick) {
        let Some(level) = self.levels.get_mut(&Reverse(pick.priority)) else {
            return;
        };
        let Some(user) = level.turns.remove(pick.turn) else {
            return;
        };
        let empty = match level.waiting.get_mut(&user) {
            Some(line) => {
                if line.pop_front().is_some() {
                    self.len -= 1;
                }
                line.is_empty()
            }
            None => true,
        };
        if empty {
            level.waiting.remove(&user);
        } else {
            level.turns.push_back(user);
        }
        if level.turns.is_empty() {
            self.levels.remove(&Reverse(pick.priority));
        }
    }

    /// Take a query out wherever it is (canceled, timed out); false when it is not here.
    pub fn remove(&mut self, priority: i32, user: &Arc<str>, key: u64) -> bool {
        let Some(level) = self.levels.get_mut(&Reverse(priority)) else {
            return false;
        };
        let Some(line) = level.waiting.get_mut(user) else {
            return false;
        };
        let Some(at) = line.iter().position(|&k| k == key) else {
            return false;
        };
        line.remove(at);
        self.len -= 1;
        if line.is_empty() {
            level.waiting.remove(user);
            level.turns.retain(|u| u != user);
        }
        if level.turns.is_empty() {
            self.levels.remove(&Reverse(priority));
        }
        true
    }

    /// Every waiting query in the order it would leave if nobody were at a running limit (for
    /// the admin API's positions).
    pub fn in_order(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.len);
        for level in self.levels.values() {
            let mut lines: Vec<std::collections::vec_deque::Iter<'_, u64>> = level
                .turns
                .iter()
                .filter_map(|u| level.waiting.get(u).map(|l| l.iter()))
                .collect();
            loop {
                let before = out.len();
                for line in &mut lines {
                    if let Some(&k) = line.next() {
                        out.push(k);
                    }
                }
                if out.len() == before {
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(order: &mut FairOrder, may_start: impl Fn(u64) -> bool + Copy) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(p) = order.next(may_start) {
            order.take(p);
            out.push(p.key);
        }
        out
    }

    #[test]
    fn users_take_turns_and_keep_their_own_order() {
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        let mut o = FairOrder::default();
        for k in 0..500 {
            o.push(0, &a, k);
        }
        o.push(0, &b, 1000);
        o.push(0, &c, 2000);
        o.push(0, &c, 2001);
        assert_eq!(o.len(), 503);
        assert_eq!(&o.in_order()[..6], &[0, 1000, 2000, 1, 2001, 2]);
        let out = drain(&mut o, |_| true);
        // b's single query leaves second, not after a's 500.
        assert_eq!(&out[..5], &[0, 1000, 2000, 1, 2001]);
        assert_eq!(out.len(), 503);
        assert!(o.is_empty());
    }

    #[test]
    fn priority_first_limits_skip_and_removal() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut o = FairOrder::default();
        o.push(0, &a, 1);
        o.push(0, &a, 2);
        o.push(5, &b, 10);
        o.push(5, &b, 11);
        // b's priority 5 goes first; with b at a limit, a's queries may still leave.
        assert_eq!(o.next(|_| true).map(|p| p.key), Some(10));
        assert_eq!(o.next(|k| k < 10).map(|p| p.key), Some(1));
        assert!(o.remove(5, &b, 11));
        assert!(!o.remove(5, &b, 11));
        o.push_front(0, &a, 0);
        assert_eq!(drain(&mut o, |_| true), vec![10, 0, 1, 2]);
        assert_eq!(o.len(), 0);
        assert!(o.next(|_| true).is_none());
    }
}
