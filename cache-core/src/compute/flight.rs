//! In-process single-flight for computed values: one computation per key at a time in a
//! process; later misses wait for it.
//!
//! The leader runs the computation in its own task (the caller's), so the closure may borrow;
//! if the leader goes away before finishing, its waiters are told and the next of them leads.
//! Writes through the cache detach the flights that already read what they purge: a miss
//! after a write must not be answered by a computation that read the data before it.
//!
//! Why this is not the records' [flight](crate::flight) (`src/flight.rs`): that one shares an
//! origin call, `'static` work it runs detached in a task of its own; a computation is the
//! caller's closure, which may borrow, so it runs in the caller's task and hands leadership on
//! when that task goes away.

use std::{
    any::Any,
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use tokio::sync::watch;

use super::HeldLock;
use crate::dependencies::DependencyScope;

/// An error shared with the waiters of a flight: an `Arc<E>`, type-erased.
pub(crate) type SharedError = Arc<dyn Any + Send + Sync>;

/// Where a flight is.
#[derive(Clone)]
pub(crate) enum FlightState {
    Running,
    /// The envelope every waiter answers from.
    Value(Bytes),
    /// The computation failed.
    Failed(SharedError),
    /// The leader went away: compute again (one of the waiters leads).
    Abandoned,
    /// The leader's answer was its own ([`Computation::Answer`](super::Computation::Answer)):
    /// each waiter computes its own, without a new flight, so that waiters of a key whose
    /// answers are never shared run side by side rather than one after another.
    Unshared,
}

struct Entry {
    id: u64,
    tx: Arc<watch::Sender<FlightState>>,
    /// What the computation read so far (its dependency scope), for [`ComputedFlights::detach`].
    reads: DependencyScope,
    /// The store lock the computation holds, released when a purge detaches it: its value
    /// will be refused, the next computation need not wait for it.
    lock: Option<Arc<HeldLock>>,
}

#[derive(Default)]
pub(crate) struct ComputedFlights {
    next: AtomicU64,
    map: Mutex<HashMap<String, Entry>>,
}

/// Whether the caller leads the flight of a key or waits for it.
pub(crate) enum Role {
    Lead(Leader),
    Join(watch::Receiver<FlightState>),
}

impl ComputedFlights {
    /// Joins the flight computing `key`, or starts one whose computation records into `reads`.
    pub(crate) fn join_or_lead(self: &Arc<Self>, key: &str, reads: &DependencyScope) -> Role {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = map.get(key) {
            return Role::Join(entry.tx.subscribe());
        }
        Role::Lead(self.insert(&mut map, key, reads))
    }

    /// Starts a flight for `key` unless one runs.
    pub(crate) fn try_lead(self: &Arc<Self>, key: &str, reads: &DependencyScope) -> Option<Leader> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.contains_key(key) {
            return None;
        }
        Some(self.insert(&mut map, key, reads))
    }

    fn insert(self: &Arc<Self>, map: &mut HashMap<String, Entry>, key: &str, reads: &DependencyScope) -> Leader {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let tx = Arc::new(watch::Sender::new(FlightState::Running));
        map.insert(
            key.to_owned(),
            Entry {
                id,
                tx: Arc::clone(&tx),
                reads: reads.clone(),
                lock: None,
            },
        );
        Leader {
            flights: Arc::clone(self),
            key: key.to_owned(),
            id,
            tx,
            finished: false,
        }
    }

    /// How many callers wait for flights in progress.
    pub(crate) fn waiters(&self) -> usize {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.values().map(|e| e.tx.receiver_count()).sum()
    }

    /// A purge of `tags`: later misses must not join flights that read any of them. Answers
    /// the store locks those flights hold, to release.
    pub(crate) fn detach(&self, tags: &[String]) -> Vec<Arc<HeldLock>> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let mut locks = Vec::new();
        map.retain(|_, entry| {
            let read = entry.reads.snapshot().tags;
            let keep = !tags.iter().any(|t| read.binary_search(t).is_ok());
            if !keep && let Some(lock) = entry.lock.take() {
                locks.push(lock);
            }
            keep
        });
        locks
    }

    fn remove(&self, key: &str, id: u64) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(key).is_some_and(|e| e.id == id) {
            map.remove(key);
        }
    }
}

/// The leader of a flight. Dropping it unfinished tells the waiters to compute again.
pub(crate) struct Leader {
    flights: Arc<ComputedFlights>,
    key: String,
    id: u64,
    tx: Arc<watch::Sender<FlightState>>,
    finished: bool,
}

impl Leader {
    /// Records the store lock the computation took, for a purge to release.
    pub(crate) fn holds(&self, lock: Arc<HeldLock>) {
        let mut map = self.flights.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = map.get_mut(&self.key).filter(|e| e.id == self.id) {
            entry.lock = Some(lock);
        }
    }

    /// Ends the flight with `state` for everyone waiting.
    pub(crate) fn finish(mut self, state: FlightState) {
        self.end(state);
    }

    fn end(&mut self, state: FlightState) {
        self.finished = true;
        self.flights.remove(&self.key, self.id);
        self.tx.send_replace(state);
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if !self.finished {
            self.end(FlightState::Abandoned);
        }
    }
}

/// Waits for a flight to end; a flight whose sender went away counts as abandoned.
pub(crate) async fn outcome(mut rx: watch::Receiver<FlightState>) -> FlightState {
    match rx.wait_for(|s| !matches!(s, FlightState::Running)).await {
        Ok(state) => state.clone(),
        Err(_) => FlightState::Abandoned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_leader_then_waiters_get_its_outcome() {
        let flights = Arc::new(ComputedFlights::default());
        let t = DependencyScope::new();
        let Role::Lead(leader) = flights.join_or_lead("k", &t) else {
            panic!("the first caller leads")
        };
        let Role::Join(rx) = flights.join_or_lead("k", &t) else {
            panic!("the second caller joins")
        };
        assert!(flights.try_lead("k", &t).is_none());
        assert_eq!(flights.waiters(), 1);
        leader.finish(FlightState::Value(Bytes::from_static(b"v")));
        assert!(matches!(outcome(rx).await, FlightState::Value(v) if v == "v"));
        assert!(flights.try_lead("k", &t).is_some(), "a finished flight is gone");
    }

    #[tokio::test]
    async fn a_dropped_leader_abandons() {
        let flights = Arc::new(ComputedFlights::default());
        let t = DependencyScope::new();
        let leader = flights.try_lead("k", &t);
        let Role::Join(rx) = flights.join_or_lead("k", &t) else {
            panic!("joins")
        };
        drop(leader);
        assert!(matches!(outcome(rx).await, FlightState::Abandoned));
    }

    #[tokio::test]
    async fn purges_detach_flights_that_read_their_tags() {
        let flights = Arc::new(ComputedFlights::default());
        let reads = DependencyScope::new();
        let _a = flights.try_lead("a", &reads);
        let _b = flights.try_lead("b", &DependencyScope::new());
        crate::dependencies::scope(reads, async { crate::dependencies::record_tags(["projects:p1"]) }).await;
        flights.detach(&["projects:p2".to_owned()]);
        assert!(
            flights.try_lead("a", &DependencyScope::new()).is_none(),
            "unrelated purge"
        );
        flights.detach(&["projects:p1".to_owned()]);
        assert!(
            flights.try_lead("a", &DependencyScope::new()).is_some(),
            "detached: a new flight starts"
        );
        assert!(flights.try_lead("b", &DependencyScope::new()).is_none());
    }
}
