//! The model-based check shared by the stores: random sequences of reads and writes against
//! one or more cache instances sharing a store answer exactly what the origin says. The
//! in-memory run is `tests/model_based.rs`; `cache-redis` runs it over Redis with two
//! instances and their near caches.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use cache_core::{
    Cache, Cacheable, Order, Query, RecordId, UpsertOutcome,
    change::{Change, ChangeOutcome},
    dependencies::{self, DependencyScope},
    testing::MemoryOrigin,
};
use proptest::prelude::*;

use crate::common::*;

/// Where the ops run.
pub(crate) trait World {
    /// The cache instance `n` (modulo the instances there are).
    fn cache(&self, n: usize) -> &Cache;
    /// The source of truth.
    fn origin(&self) -> &MemoryOrigin;
    /// Moves the caches' clock on by `by`; `false` when time cannot be moved (a real server),
    /// and then the op changes nothing.
    fn advance(&self, by: Duration) -> bool;
    /// How many times each read runs in a row (each answer checked): more than once where a
    /// second read is answered differently (a store hit kept, then a near cache hit).
    fn reads(&self) -> usize {
        1
    }
    /// After a write on instance `writer` returned: the other instances apply what it
    /// invalidated (their near caches), as an application would wait for before reading
    /// another instance's write. The writer itself reads its own writes without it.
    async fn settle(&self, writer: usize);
}

pub(crate) const IDS: u8 = 8;

pub(crate) fn rid(i: u8) -> RecordId {
    id(&format!("recP{i}"))
}

pub(crate) fn event(i: u8) -> String {
    format!("recE{i}")
}

pub(crate) fn status() -> impl Strategy<Value = Status> {
    prop_oneof![Just(Status::Draft), Just(Status::Submitted), Just(Status::Judged)]
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Get(u8),
    GetMany(Vec<u8>),
    Query {
        status: Option<Status>,
        event: Option<u8>,
        sort: Option<Order>,
        offset: u8,
        limit: Option<u8>,
        /// Run inside a `Cache-Control: no-cache` scope: bypass the cache, store what the
        /// origin says.
        refresh: bool,
    },
    /// The application writes the record at the source, then upserts it.
    Upsert {
        id: u8,
        event: u8,
        status: Status,
        points: i8,
    },
    /// The application changes (or not) the record at the source, then invalidates it.
    Invalidate {
        id: u8,
        change: Option<(Status, i8)>,
    },
    Delete(u8),
    /// The source creates the id again (after a delete, or for the first time), and the
    /// application invalidates it.
    Recreate {
        id: u8,
        event: u8,
        status: Status,
        points: i8,
    },
    /// Time passes (TTLs and tombstones expire).
    Advance {
        hours: u8,
    },
    /// The source's change feed delivers one of the record's past changes again: late,
    /// duplicated or out of order (`back` changes before the latest).
    Redeliver {
        id: u8,
        back: u8,
    },
    /// A write the application made before the record's latest delete reaches the cache
    /// after it (the write racing the delete).
    LateWrite(u8),
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    let i = 0..IDS;
    prop_oneof![
        3 => i.clone().prop_map(Op::Get),
        2 => prop::collection::vec(0..IDS, 0..6).prop_map(Op::GetMany),
        3 => (
            prop::option::of(status()),
            prop::option::of(0..2u8),
            prop::option::of(prop_oneof![Just(Order::Asc), Just(Order::Desc)]),
            0..4u8,
            prop::option::of(0..4u8),
            prop::bool::weighted(0.25),
        )
            .prop_map(|(status, event, sort, offset, limit, refresh)| Op::Query {
                status,
                event,
                sort,
                offset,
                limit,
                refresh
            }),
        3 => (i.clone(), 0..2u8, status(), -3..4i8).prop_map(|(id, event, status, points)| Op::Upsert {
            id,
            event,
            status,
            points
        }),
        1 => (i.clone(), prop::option::of((status(), -3..4i8))).prop_map(|(id, change)| Op::Invalidate { id, change }),
        1 => i.clone().prop_map(Op::Delete),
        1 => (i, 0..2u8, status(), -3..4i8).prop_map(|(id, event, status, points)| Op::Recreate {
            id,
            event,
            status,
            points
        }),
        1 => (1..10u8).prop_map(|hours| Op::Advance { hours }),
        2 => (0..IDS, 0..4u8).prop_map(|(id, back)| Op::Redeliver { id, back }),
        1 => (0..IDS).prop_map(Op::LateWrite),
    ]
}

impl Op {
    /// Whether the op writes to the cache (and so may invalidate other instances' near caches).
    fn writes(&self) -> bool {
        !matches!(
            self,
            Op::Get(_) | Op::GetMany(_) | Op::Query { .. } | Op::Advance { .. }
        )
    }
}

/// The source of truth as the test sees it, and the answers it expects.
#[derive(Default)]
struct Model {
    records: BTreeMap<RecordId, Project>,
    version: i64,
    /// Every change of each record as its feed delivered it: the source time, and the
    /// record (`None`: deleted).
    history: BTreeMap<RecordId, Vec<(SystemTime, Option<Project>)>>,
    /// The latest source time given out.
    last: Option<SystemTime>,
    /// Hours passed on the cache's clock, and when (in them) each record was last deleted.
    hours: u32,
    deleted_at: BTreeMap<RecordId, u32>,
}

impl Model {
    /// The next source time: after every earlier one, and after now (a delete the cache
    /// stamped with its own clock).
    fn tick(&mut self) -> SystemTime {
        let now = SystemTime::now();
        let next = match self.last {
            Some(last) if last >= now => last + Duration::from_micros(1),
            _ => now,
        };
        self.last = Some(next);
        next
    }

    fn record(&mut self, id: &RecordId, at: SystemTime, state: Option<Project>) {
        self.history.entry(id.clone()).or_default().push((at, state));
    }

    fn expected_query(&self, q: &Query<Project>) -> Vec<RecordId> {
        let iq = q.as_index_query();
        let mut rows: Vec<&Project> = self
            .records
            .values()
            .filter(|p| {
                iq.filters
                    .iter()
                    .all(|f| p.index_entries().tag(f.field) == Some(f.value.as_str()))
            })
            .collect();
        rows.sort_by(|a, b| {
            let key = |p: &Project| if iq.sort.is_some() { p.points } else { 0 };
            let asc = key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id));
            match iq.sort.map(|s| s.order) {
                Some(Order::Desc) => asc.reverse(),
                _ => asc,
            }
        });
        rows.into_iter()
            .skip(iq.offset)
            .take(iq.limit.unwrap_or(usize::MAX))
            .map(|p| p.id.clone())
            .collect()
    }
}

/// Runs `ops` (each on the cache instance it names) and checks every answer against the
/// model.
pub(crate) async fn run<W: World>(world: &W, ops: Vec<(usize, Op)>) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    // Start with some records at the source.
    for i in 0..IDS / 2 {
        model.version += 1;
        let p = project(
            &format!("recP{i}"),
            &event(i % 2),
            Status::Submitted,
            i64::from(i),
            model.version,
        );
        world.origin().put(&p).expect("renders");
        model.records.insert(p.id.clone(), p);
    }
    for (on, op) in ops {
        let writes = op.writes();
        let cache = world.cache(on);
        for _ in 0..if writes { 1 } else { world.reads() } {
            match op.clone() {
                Op::Get(i) => {
                    let got = cache.get::<Project>(&rid(i)).await.expect("get");
                    prop_assert_eq!(got.as_ref(), model.records.get(&rid(i)), "get {}", i);
                }
                Op::GetMany(list) => {
                    let asked: Vec<RecordId> = list.iter().map(|i| rid(*i)).collect();
                    let got: Vec<RecordId> = cache
                        .get_many::<Project>(&asked)
                        .await
                        .expect("get_many")
                        .into_iter()
                        .map(|p| p.id)
                        .collect();
                    let mut expected = Vec::new();
                    for id in asked {
                        if model.records.contains_key(&id) && !expected.contains(&id) {
                            expected.push(id);
                        }
                    }
                    prop_assert_eq!(got, expected, "get_many {:?}", list);
                }
                Op::Query {
                    status,
                    event: ev,
                    sort,
                    offset,
                    limit,
                    refresh,
                } => {
                    let mut q = Query::<Project>::all();
                    if let Some(s) = status {
                        q = q.and(Project::by_status(&s));
                    }
                    if let Some(e) = ev {
                        q = q.and(Project::by_event(&id(&event(e))));
                    }
                    if let Some(order) = sort {
                        q = q.sort(ProjectSort::Points, order);
                    }
                    q = q.offset(usize::from(offset));
                    if let Some(l) = limit {
                        q = q.limit(usize::from(l));
                    }
                    let expected = model.expected_query(&q);
                    let run = cache.query(q.clone());
                    let found = if refresh {
                        dependencies::scope(DependencyScope::new().refresh(true), run).await
                    } else {
                        run.await
                    };
                    let got: Vec<RecordId> = found.expect("query").into_iter().map(|p| p.id).collect();
                    prop_assert_eq!(got, expected, "{:?} (refresh: {})", q, refresh);
                }
                Op::Upsert {
                    id: i,
                    event: e,
                    status,
                    points,
                } => {
                    model.version += 1;
                    let p = project(&format!("recP{i}"), &event(e), status, i64::from(points), model.version);
                    world.origin().put(&p).expect("renders");
                    // The source's feed delivers it, with the source's time.
                    let at = model.tick();
                    let change = Change::upsert(Project::schema(), p.to_source().expect("source")).at(at);
                    let outcome = cache.apply_change(change).await.expect("apply");
                    prop_assert!(matches!(outcome, ChangeOutcome::Applied), "upsert {}: {:?}", i, outcome);
                    model.record(&p.id, at, Some(p.clone()));
                    model.records.insert(p.id.clone(), p);
                }
                Op::Invalidate { id: i, change } => {
                    if let (Some((status, points)), Some(p)) = (change, model.records.get_mut(&rid(i))) {
                        model.version += 1;
                        p.status = status;
                        p.points = i64::from(points);
                        p.version = model.version;
                        world.origin().put(&*p).expect("renders");
                        let changed = p.clone();
                        let at = model.tick();
                        model.record(&rid(i), at, Some(changed));
                    }
                    cache.invalidate::<Project>(&rid(i)).await.expect("invalidate");
                }
                Op::Delete(i) => {
                    let existed = cache.delete::<Project>(&rid(i)).await.expect("delete");
                    let before = model.records.remove(&rid(i));
                    prop_assert_eq!(existed, before.is_some(), "delete {}", i);
                    // The cache stamped the delete with its clock; the feed delivers it too.
                    let at = model.tick();
                    model.record(&rid(i), at, None);
                    model.deleted_at.insert(rid(i), model.hours);
                }
                Op::Redeliver { id: i, back } => {
                    let Some(past) = model.history.get(&rid(i)) else {
                        continue;
                    };
                    let Some((at, state)) = past.iter().rev().nth(usize::from(back)).cloned() else {
                        continue;
                    };
                    let change = match state {
                        Some(p) => Change::upsert(Project::schema(), p.to_source().expect("source")),
                        None => Change::delete(Project::schema(), rid(i)),
                    };
                    let outcome = cache.apply_change(change.at(at)).await.expect("apply");
                    prop_assert!(!outcome.should_retry(), "redelivery {}: {:?}", i, outcome);
                }
                Op::LateWrite(i) => {
                    // The state the record had before its latest delete, if it was deleted since.
                    let Some(past) = model.history.get(&rid(i)) else {
                        continue;
                    };
                    let Some(deleted) = past.iter().rposition(|(_, state)| state.is_none()) else {
                        continue;
                    };
                    let Some(Some(before)) = past[..deleted].iter().rev().map(|(_, s)| s.clone()).next() else {
                        continue;
                    };
                    // A delete is final while its tombstone lives (`tombstone_ttl = "1h"`, less the
                    // jitter): a write later than that is not ordered against it.
                    if model.deleted_at.get(&rid(i)).is_none_or(|&at| model.hours > at) {
                        continue;
                    }
                    let outcome = cache.upsert(&before).await.expect("upsert");
                    if !model.records.contains_key(&rid(i)) {
                        prop_assert_eq!(outcome, UpsertOutcome::Deleted, "late write of deleted {}", i);
                    }
                }
                Op::Recreate {
                    id: i,
                    event: e,
                    status,
                    points,
                } => {
                    if !model.records.contains_key(&rid(i)) {
                        model.version += 1;
                        let p = project(&format!("recP{i}"), &event(e), status, i64::from(points), model.version);
                        world.origin().put(&p).expect("renders");
                        let at = model.tick();
                        model.record(&p.id, at, Some(p.clone()));
                        model.records.insert(p.id.clone(), p);
                    }
                    cache.invalidate::<Project>(&rid(i)).await.expect("invalidate");
                }
                Op::Advance { hours } => {
                    if world.advance(HOUR * u32::from(hours)) {
                        model.hours += u32::from(hours);
                    }
                }
            }
        }
        if writes {
            world.settle(on).await;
        }
    }
    Ok(())
}
