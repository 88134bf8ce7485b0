//! A record survives source shape -> model -> cached form -> model -> source shape unchanged.

use cache_core::{Cacheable, IndexValue, Link, Links, RecordId, origin::SourceRecord};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

#[derive(Cacheable, Debug, PartialEq)]
#[cache(entity = "tasks", rename_all = "kebab-case")]
struct Task {
    #[cache(id)]
    id: RecordId,
    title: String,
    #[sortable]
    count: i64,
    note: Option<String>,
    #[indexed]
    done: bool,
    project: Link<Project>,
    reviewer: Option<Link<Project>>,
    watchers: Links<Project>,
    #[indexed]
    state: State,
    #[cache(version)]
    modified: DateTime<Utc>,
    #[sortable]
    due: Option<DateTime<Utc>>,
    #[cache(source = "Join Code")]
    join_code: String,
    #[cache(skip)]
    scratch: Vec<u8>,
}

#[derive(Cacheable, Debug, PartialEq)]
#[cache(entity = "projects")]
struct Project {
    #[cache(id)]
    id: RecordId,
}

#[derive(IndexValue, Serialize, Deserialize, Debug, PartialEq, Clone, Copy)]
enum State {
    Open,
    Closed,
}

fn record_id() -> impl Strategy<Value = String> {
    "rec[A-Za-z0-9]{1,14}"
}

fn timestamp() -> impl Strategy<Value = Value> {
    (0_i64..4_000_000_000, 0_u32..1_000_000_000).prop_map(|(secs, nanos)| {
        let at = DateTime::<Utc>::from_timestamp(secs, nanos).expect("in range");
        serde_json::to_value(at).expect("serialisable")
    })
}

prop_compose! {
    fn source_record()(
        id in record_id(),
        title in ".*",
        count in any::<i64>(),
        note in proptest::option::of(".*"),
        done in any::<bool>(),
        project in record_id(),
        reviewer in proptest::option::of(record_id()),
        watchers in proptest::collection::vec(record_id(), 0..4),
        state in prop_oneof![Just("Open"), Just("Closed")],
        modified in timestamp(),
        due in proptest::option::of(timestamp()),
        join_code in "[A-Z0-9-]{0,8}",
    ) -> SourceRecord {
        let mut fields = Map::new();
        fields.insert("title".into(), json!(title));
        fields.insert("count".into(), json!(count));
        if let Some(note) = note {
            fields.insert("note".into(), json!(note));
        }
        fields.insert("done".into(), json!(done));
        fields.insert("project-id".into(), json!([project]));
        if let Some(reviewer) = reviewer {
            fields.insert("reviewer-id".into(), json!([reviewer]));
        }
        fields.insert("watchers".into(), json!(watchers));
        fields.insert("state".into(), json!(state));
        fields.insert("modified".into(), modified);
        if let Some(due) = due {
            fields.insert("due".into(), due);
        }
        fields.insert("Join Code".into(), json!(join_code));
        SourceRecord { id: RecordId::new(id).expect("a valid id"), fields }
    }
}

proptest! {
    #[test]
    fn source_to_cached_and_back(record in source_record()) {
        let task = Task::from_source(record.clone()).unwrap();
        prop_assert!(task.scratch.is_empty());
        let cached = task.to_cached().unwrap();
        let back = Task::from_cached(&cached).unwrap();
        prop_assert_eq!(&back, &task);
        prop_assert_eq!(back.to_source().unwrap(), record);
        prop_assert_eq!(back.index_entries(), task.index_entries());
        prop_assert_eq!(back.version(), Some(task.modified.timestamp_millis() as f64));
    }
}
