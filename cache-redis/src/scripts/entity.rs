//! Calls of the entity scripts (`put`, `remove`, `lease`, `query`, `complete`): every one of them
//! runs in one bucket and declares the bucket's shared keys first (see `lua/entity.lua`).

use bytes::Bytes;
use cache_core::{
    RecordId,
    schema::IndexEntries,
    store::{RecordWrite, StoreResult, WriteOutcome},
};
use redis::{Script, ScriptInvocation, Value};

use super::{ScriptCall, Scripts, as_array, as_bytes, as_u64, backend, ms};
use crate::{layout::BucketKeys, meta};

/// The four shared keys and the bucket prefix every entity script starts with.
fn bucket(invocation: &mut ScriptInvocation<'_>, keys: &BucketKeys) {
    for key in keys.script_keys() {
        invocation.key(key);
    }
    invocation.arg(keys.prefix());
}

/// One record's arguments as `put.lua` and `complete.lua` read them: id, body, ttl (ms),
/// version, source time, meta.
fn record(invocation: &mut ScriptInvocation<'_>, write: &RecordWrite) {
    invocation
        .arg(write.id.as_str())
        .arg(write.body.as_ref())
        .arg(ms(write.ttl))
        .arg(meta::version_arg(write.version))
        .arg(write.at.map(|at| at.to_string()).unwrap_or_default())
        .arg(meta::encode(&write.index, write.version));
}

/// A meta reply: the index entries a record was filed under, or nil.
fn previous(value: Value) -> StoreResult<Option<IndexEntries>> {
    as_bytes(value).map(|m| meta::decode(&m)).transpose().map_err(backend)
}

/// How `put.lua` writes: as an upsert, or as a fill under a lease.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PutMode {
    /// An upsert: ordered by version and source time only.
    Upsert,
    /// A read-through fill under the lease with this token.
    Fill(u64),
}

/// `put.lua`: writes records with their index entries, each moved out of its old entries.
pub(crate) struct Put<'a> {
    pub(crate) keys: &'a BucketKeys,
    pub(crate) mode: PutMode,
    /// How long the bucket's shared keys live at least (ms).
    pub(crate) index_ttl: u64,
    pub(crate) records: Vec<&'a RecordWrite>,
}

impl ScriptCall for Put<'_> {
    /// Per record, in order: what became of it.
    type Reply = Vec<WriteOutcome>;

    fn script(scripts: &Scripts) -> &Script {
        &scripts.put
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        bucket(invocation, self.keys);
        let (mode, token) = match self.mode {
            PutMode::Upsert => ("upsert", String::new()),
            PutMode::Fill(token) => ("fill", token.to_string()),
        };
        invocation.arg(mode).arg(token).arg(self.index_ttl);
        for write in &self.records {
            record(invocation, write);
        }
    }

    fn decode(&self, reply: Value) -> StoreResult<Self::Reply> {
        let answer = as_array(reply, "put")?;
        if answer.len() != self.records.len() * 2 {
            return Err(backend("put: script answered the wrong number of outcomes"));
        }
        let mut answer = answer.into_iter();
        let mut out = Vec::with_capacity(self.records.len());
        while let (Some(status), Some(meta)) = (answer.next(), answer.next()) {
            out.push(match as_u64(&status) {
                Some(0) => WriteOutcome::Written {
                    previous: previous(meta)?,
                },
                Some(1) => WriteOutcome::StaleVersion,
                Some(2) => WriteOutcome::LeaseLost,
                Some(3) => WriteOutcome::Deleted,
                Some(4) => WriteOutcome::Unordered,
                _ => return Err(backend(format!("put: unknown outcome {status:?}"))),
            });
        }
        Ok(out)
    }
}

/// How `remove.lua` takes records out.
#[derive(Debug, Clone)]
pub(crate) enum RemoveHow {
    /// Forgets them; a delete's tombstone stays as an order-only one.
    Invalidate,
    /// A delete the source reported: a tombstone of `ttl` ms holding the delete's version and
    /// source time (microseconds).
    Tombstone {
        ttl: u64,
        version: Option<f64>,
        at: Option<i64>,
    },
    /// A fill that found nothing, under the lease `token`: a negative tombstone of `ttl` ms.
    FillTombstone { ttl: u64, token: u64 },
}

/// `remove.lua`: takes records out of the cache with their index entries.
pub(crate) struct Remove<'a> {
    pub(crate) keys: &'a BucketKeys,
    pub(crate) how: RemoveHow,
    /// How long the bucket's shared keys live at least (ms).
    pub(crate) index_ttl: u64,
    pub(crate) ids: Vec<&'a RecordId>,
}

impl ScriptCall for Remove<'_> {
    /// Per id, in order: the index entries it was filed under, if it was cached.
    type Reply = Vec<Option<IndexEntries>>;

    fn script(scripts: &Scripts) -> &Script {
        &scripts.remove
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        bucket(invocation, self.keys);
        let none = String::new;
        let (mode, tomb_ttl, token, version, at) = match &self.how {
            RemoveHow::Invalidate => ("invalidate", 1, none(), none(), none()),
            RemoveHow::Tombstone { ttl, version, at } => (
                "tombstone",
                *ttl,
                none(),
                meta::version_arg(*version),
                at.map(|at| at.to_string()).unwrap_or_default(),
            ),
            RemoveHow::FillTombstone { ttl, token } => ("fill-tombstone", *ttl, token.to_string(), none(), none()),
        };
        invocation
            .arg(mode)
            .arg(tomb_ttl)
            .arg(self.index_ttl)
            .arg(token)
            .arg(version)
            .arg(at);
        for id in &self.ids {
            invocation.arg(id.as_str());
        }
    }

    fn decode(&self, reply: Value) -> StoreResult<Self::Reply> {
        let answer = as_array(reply, "remove")?;
        if answer.len() != self.ids.len() {
            return Err(backend("remove: script answered the wrong number of entries"));
        }
        answer.into_iter().map(previous).collect()
    }
}

/// `lease.lua`: one lease token on ids, replacing earlier leases on them.
pub(crate) struct TakeLease<'a> {
    pub(crate) keys: &'a BucketKeys,
    pub(crate) token: u64,
    /// The lease's lifetime (ms).
    pub(crate) ttl: u64,
    pub(crate) ids: Vec<&'a RecordId>,
}

impl ScriptCall for TakeLease<'_> {
    type Reply = ();

    fn script(scripts: &Scripts) -> &Script {
        &scripts.lease
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        bucket(invocation, self.keys);
        invocation.arg(self.token).arg(self.ttl);
        for id in &self.ids {
            invocation.arg(id.as_str());
        }
    }

    fn decode(&self, _reply: Value) -> StoreResult<()> {
        Ok(())
    }
}

/// `query.lua`: answers an index query from one bucket when its completeness marker holds.
pub(crate) struct Query<'a> {
    pub(crate) keys: &'a BucketKeys,
    /// The query's completeness marker.
    pub(crate) marker: String,
    /// The zset the answer is ordered by (a sort field's, or the ids').
    pub(crate) ordering: String,
    /// The filters' tag sets.
    pub(crate) tags: Vec<String>,
    /// How long the bucket's shared keys live at least (ms).
    pub(crate) index_ttl: u64,
    pub(crate) descending: bool,
    pub(crate) offset: usize,
    /// `None`: every row from the offset on.
    pub(crate) count: Option<usize>,
    /// Whether each row's id and score is wanted too (to merge buckets' pages).
    pub(crate) ranked: bool,
}

/// One bucket's answer to a query: its sequence, and when its marker holds, its page.
pub(crate) struct Page {
    pub(crate) seq: u64,
    pub(crate) rows: Option<Rows>,
}

/// A bucket's page, each body `None` when the record expired or was evicted. `ranks` (each
/// row's id and score) is asked for only when pages of several buckets are merged.
pub(crate) struct Rows {
    pub(crate) ranks: Vec<(String, f64)>,
    pub(crate) bodies: Vec<Option<Bytes>>,
}

/// An offset or count as a script argument: capped at 2^53, where Lua's numbers (doubles) stop
/// being exact, far beyond any real page.
fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX).min(1 << 53)
}

impl ScriptCall for Query<'_> {
    type Reply = Page;

    fn script(scripts: &Scripts) -> &Script {
        &scripts.query
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        bucket(invocation, self.keys);
        invocation.key(&self.marker).key(&self.ordering);
        for tag in &self.tags {
            invocation.key(tag);
        }
        invocation
            .arg(self.index_ttl)
            .arg(if self.descending { "1" } else { "0" })
            .arg(to_i64(self.offset))
            .arg(self.count.map_or(-1, to_i64))
            .arg(if self.ranked { "1" } else { "0" });
    }

    fn decode(&self, reply: Value) -> StoreResult<Page> {
        let mut items = as_array(reply, "query")?.into_iter();
        let complete = items.next().as_ref().and_then(as_u64) == Some(1);
        let seq = items
            .next()
            .as_ref()
            .and_then(as_u64)
            .ok_or_else(|| backend("query: reply without a sequence"))?;
        if !complete {
            return Ok(Page { seq, rows: None });
        }
        let mut ranks = Vec::new();
        if self.ranked {
            let n = items
                .next()
                .as_ref()
                .and_then(as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| backend("query: reply without a row count"))?;
            ranks.reserve(n);
            for _ in 0..n {
                let (Some(id), Some(score)) = (items.next(), items.next()) else {
                    return Err(backend("query: reply with too few rows"));
                };
                let id: String = redis::from_redis_value(id).map_err(|e| backend(e.to_string()))?;
                let score: String = redis::from_redis_value(score).map_err(|e| backend(e.to_string()))?;
                let score = score
                    .parse::<f64>()
                    .map_err(|_| backend(format!("query: score {score:?} is not a number")))?;
                ranks.push((id, score));
            }
        }
        let bodies: Vec<Option<Bytes>> = items.map(as_bytes).collect();
        if self.ranked && bodies.len() != ranks.len() {
            return Err(backend("query: reply with more or fewer bodies than rows"));
        }
        Ok(Page {
            seq,
            rows: Some(Rows { ranks, bodies }),
        })
    }
}

/// `complete.lua`: stores the complete result of a filter set in one bucket and marks it
/// complete, unless the bucket was written since the fill token.
pub(crate) struct Complete<'a> {
    pub(crate) keys: &'a BucketKeys,
    pub(crate) marker: String,
    /// The filters' tag sets.
    pub(crate) tags: Vec<String>,
    /// Every sort zset of the entity (the marker serves every order).
    pub(crate) sorts: Vec<String>,
    /// The bucket's sequence when the fill began.
    pub(crate) token: u64,
    /// How long the marker and the keys it relies on live at least (ms).
    pub(crate) index_ttl: u64,
    /// The bucket's records of the result.
    pub(crate) records: Vec<&'a RecordWrite>,
}

impl ScriptCall for Complete<'_> {
    /// `None`: refused (the bucket was written since the token); otherwise the ids of cached
    /// records it forgot because the origin's result no longer has them.
    type Reply = Option<Vec<RecordId>>;

    fn script(scripts: &Scripts) -> &Script {
        &scripts.complete
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        bucket(invocation, self.keys);
        invocation.key(&self.marker);
        for key in self.tags.iter().chain(&self.sorts) {
            invocation.key(key);
        }
        invocation.arg(self.token).arg(self.index_ttl).arg(self.tags.len());
        for write in &self.records {
            record(invocation, write);
        }
    }

    fn decode(&self, reply: Value) -> StoreResult<Self::Reply> {
        if as_u64(&reply) == Some(0) {
            return Ok(None);
        }
        let mut answer = as_array(reply, "complete_query")?.into_iter();
        if answer.next().as_ref().and_then(as_u64) != Some(1) {
            return Err(backend("complete_query: the script answered no status"));
        }
        answer
            .map(|id| {
                let id = as_bytes(id).ok_or_else(|| backend("complete_query: an id is not a string"))?;
                let id = String::from_utf8(id.to_vec()).map_err(|err| backend(err.to_string()))?;
                RecordId::new(id).map_err(|err| backend(err.to_string()))
            })
            .collect::<StoreResult<Vec<_>>>()
            .map(Some)
    }
}
