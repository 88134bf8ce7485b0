//! Seeding a base with the demo's data through Airtable's API, as a client seeds Airtable:
//! records created 10 a request, within the client's rate limit, in the tables the models
//! name.
//!
//! Airtable chooses the ids of the records it creates, so the seed's links are rewritten on the
//! way: a table is created after the tables its single links point to (users, events,
//! projects, votes, referrals), and a link to a table not created yet (a user's events) is
//! filled in afterwards, with updates of 10 records a request.

use std::{collections::HashMap, time::Instant};

use cache_airtable::{AirtableClient, AirtableError, ListRecords, MAX_RECORDS_PER_BATCH};
use cache_core::schema::{EntitySchema, FieldKind};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::seed::{self, SeedCounts};

/// Why a base could not be seeded.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// Airtable failed or refused.
    #[error(transparent)]
    Airtable(#[from] AirtableError),
    /// The base lacks tables the models read.
    #[error(
        "the base has no table {0}: create it (with the fields `demo-app schema` lists as source names), \
         or run `demo-app airtable sim`, whose base has them"
    )]
    MissingTables(String),
    /// A table already holds records.
    #[error("table {table} already holds records: seed with --replace to delete them first")]
    NotEmpty {
        /// The table.
        table: String,
    },
    /// Airtable answered a create with fewer records than it was sent.
    #[error("Airtable created {created} of {sent} records in {table}")]
    ShortCreate {
        /// The table.
        table: String,
        /// Records sent.
        sent: usize,
        /// Records answered.
        created: usize,
    },
}

/// What a seed did.
#[derive(Debug, Clone, Serialize)]
pub struct SeededBase {
    /// Records created per table, in the order they were created.
    pub tables: Vec<(&'static str, usize)>,
    /// Records deleted first (`--replace`).
    pub deleted: usize,
    /// Requests sent to Airtable.
    pub requests: u64,
    /// Wall time, in milliseconds.
    pub elapsed_ms: u64,
    /// The Airtable id of each seeded record, by the seed's own id.
    #[serde(skip)]
    pub ids: HashMap<String, String>,
}

impl SeededBase {
    /// The Airtable id of the seed's record `seed_id`.
    pub fn id_of(&self, seed_id: &str) -> Option<&str> {
        self.ids.get(seed_id).map(String::as_str)
    }
}

/// A record's cells, by field name.
type Cells = Map<String, Value>;

/// A record created with some of its links left for later: its new id and those links.
struct Deferred {
    table: &'static str,
    id: String,
    fields: Map<String, Value>,
}

/// Seeds the base `client` reaches with `counts` of the demo's data; `progress` hears of each
/// request. The tables must exist; with `replace`, their records are deleted first, otherwise
/// a table holding records is refused before anything is written.
pub async fn seed_base(
    client: &AirtableClient,
    counts: SeedCounts,
    replace: bool,
    mut progress: impl FnMut(&'static str),
) -> Result<SeededBase, SeedError> {
    let started = Instant::now();
    let mut requests = 0u64;
    let tables = seed::tables(counts);
    let existing = client.list_tables().await?;
    requests += 1;
    let missing: Vec<&str> = tables
        .iter()
        .map(|(schema, _)| schema.source_table)
        .filter(|table| !existing.iter().any(|t| t.name == *table || t.id == *table))
        .collect();
    if !missing.is_empty() {
        return Err(SeedError::MissingTables(missing.join(", ")));
    }

    let mut deleted = 0;
    for (schema, _) in &tables {
        let table = schema.source_table;
        let ids_only = ListRecords {
            fields: Some(Vec::new()),
            page_size: Some(1),
            ..ListRecords::default()
        };
        let first = client.list_records(table, &ids_only).await?;
        requests += 1;
        if first.records.is_empty() {
            continue;
        }
        if !replace {
            return Err(SeedError::NotEmpty {
                table: table.to_owned(),
            });
        }
        let all = ListRecords {
            fields: Some(Vec::new()),
            ..ListRecords::default()
        };
        let ids: Vec<String> = client.list_all(table, &all).await?.into_iter().map(|r| r.id).collect();
        requests += ids.len().div_ceil(100).max(1) as u64;
        for chunk in ids.chunks(MAX_RECORDS_PER_BATCH) {
            let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
            deleted += client.delete_records(table, &chunk).await?.len();
            requests += 1;
            progress(table);
        }
    }

    let mut ids: HashMap<String, String> = HashMap::new();
    let mut created_tables: Vec<&'static str> = Vec::new();
    let mut deferred: Vec<Deferred> = Vec::new();
    let mut created_counts = Vec::new();
    for (schema, rows) in &tables {
        let table = schema.source_table;
        let mut now_rows = Vec::with_capacity(rows.len());
        let mut later_rows = Vec::with_capacity(rows.len());
        for row in rows {
            let (now, later) = cells(schema, row, &ids, &created_tables);
            now_rows.push(now);
            later_rows.push(later);
        }
        let seed_ids: Vec<&str> = rows
            .iter()
            .map(|row| row.get("id").and_then(Value::as_str).unwrap_or_default())
            .collect();
        let mut created = 0;
        for (start, batch) in (0..)
            .step_by(MAX_RECORDS_PER_BATCH)
            .zip(now_rows.chunks(MAX_RECORDS_PER_BATCH))
        {
            let answer = client.create_records(table, batch.to_vec()).await?;
            requests += 1;
            progress(table);
            if answer.len() != batch.len() {
                return Err(SeedError::ShortCreate {
                    table: table.to_owned(),
                    sent: batch.len(),
                    created: answer.len(),
                });
            }
            // Airtable answers the records in the order they were sent.
            for (offset, record) in answer.into_iter().enumerate() {
                let i = start + offset;
                ids.insert(seed_ids[i].to_owned(), record.id.clone());
                let later = std::mem::take(&mut later_rows[i]);
                if !later.is_empty() {
                    deferred.push(Deferred {
                        table,
                        id: record.id,
                        fields: later,
                    });
                }
            }
            created += batch.len();
        }
        created_tables.push(schema.entity);
        created_counts.push((table, created));
    }

    // The links left for later, now that every record has its Airtable id.
    let mut updates: HashMap<&'static str, Vec<(String, Cells)>> = HashMap::new();
    for record in deferred {
        let fields = record
            .fields
            .into_iter()
            .map(|(name, value)| (name, map_ids(&value, &ids)))
            .collect();
        updates.entry(record.table).or_default().push((record.id, fields));
    }
    for (schema, _) in &tables {
        let table = schema.source_table;
        let Some(records) = updates.remove(table) else {
            continue;
        };
        for batch in records.chunks(MAX_RECORDS_PER_BATCH) {
            client.update_records(table, batch.to_vec()).await?;
            requests += 1;
            progress(table);
        }
    }

    Ok(SeededBase {
        tables: created_counts,
        deleted,
        requests,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        ids,
    })
}

/// A seed row as Airtable cells: the cells to create the record with, and the links to set
/// once the tables they point to exist. Links become lists of Airtable ids (as Airtable sends
/// a link field, single links included); `null` and empty cells are left out, as Airtable
/// leaves them out.
fn cells(
    schema: &EntitySchema,
    row: &Map<String, Value>,
    ids: &HashMap<String, String>,
    created: &[&str],
) -> (Map<String, Value>, Map<String, Value>) {
    let mut now = Map::new();
    let mut later = Map::new();
    for (column, value) in row {
        if column == "id" || value.is_null() {
            continue;
        }
        let Some(field) = schema.fields.iter().find(|f| f.source_name == column) else {
            continue;
        };
        let target = match field.kind {
            FieldKind::Scalar => {
                now.insert(column.clone(), value.clone());
                continue;
            }
            FieldKind::Link { target } | FieldKind::Links { target } => target().entity,
        };
        if created.contains(&target) {
            let value = map_ids(value, ids);
            if value.as_array().is_some_and(|a| !a.is_empty()) {
                now.insert(column.clone(), value);
            }
        } else if value.as_array().is_none_or(|a| !a.is_empty()) {
            later.insert(column.clone(), value.clone());
        }
    }
    (now, later)
}

/// An id, or a list of ids, of the seed as a list of Airtable ids.
fn map_ids(value: &Value, ids: &HashMap<String, String>) -> Value {
    let one = |v: &Value| v.as_str().and_then(|id| ids.get(id)).map(|id| Value::from(id.as_str()));
    match value {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        single => one(single).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use cache_core::Cacheable;
    use serde_json::json;

    use super::*;
    use crate::models::{Event, User};

    #[test]
    fn links_become_airtable_ids_now_or_later() {
        let ids: HashMap<String, String> = [("recSeedUser00001", "recAirUser000001")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        let row = json!({
            "id": "recSeedEvent0001", "name": "Lisbon Hack #1", "owner_id": "recSeedUser00001",
            "attendees": ["recSeedUser00001", "recUnknown000001"], "join_code": "",
        });
        let (now, later) = cells(Event::schema(), row.as_object().unwrap(), &ids, &["users"]);
        assert_eq!(
            Value::Object(now),
            json!({ "name": "Lisbon Hack #1", "owner_id": ["recAirUser000001"],
                    "attendees": ["recAirUser000001"], "join_code": "" })
        );
        assert!(later.is_empty());

        let row = json!({ "id": "recSeedUser00001", "email": "a@b.c", "owned_events": [],
                          "attending_events": ["recSeedEvent0001"] });
        let (now, later) = cells(User::schema(), row.as_object().unwrap(), &ids, &[]);
        assert_eq!(Value::Object(now), json!({ "email": "a@b.c" }));
        assert_eq!(
            Value::Object(later),
            json!({ "attending_events": ["recSeedEvent0001"] })
        );
    }
}
