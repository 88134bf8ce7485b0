//! [`AirtableOrigin`]: the cache's `Origin` on one Airtable base.

use std::{collections::HashMap, time::SystemTime};

use async_trait::async_trait;
use cache_core::{
    RecordId, order,
    origin::{Deletion, Origin, OriginError, SourceQuery, SourceRecord},
    schema::{EntitySchema, FieldKind, FieldSchema},
};
use serde_json::Value;

use crate::{
    AirtableClient, AirtableError, Direction, ListRecords, MAX_PAGE_SIZE, MAX_RECORDS_PER_BATCH, Record, SortBy,
    formula::{self, CellKind},
};

/// Room left in a URL for everything but the formula (scheme, host, base, table, other
/// parameters).
const URL_HEADROOM: usize = 1_000;

/// The `Origin` on one Airtable base: a table per entity (its `source_table`, or an override),
/// fields by their source names.
///
/// - Reads: `fetch` gets one record (Airtable's 404 is "not found"; 401, 403, 422 and 5xx are
///   errors, never cached as not found). `fetch_many` and `exists_many` list records with a
///   `RECORD_ID()` formula, in chunks of at most 100 ids that keep the URL under Airtable's
///   16,000 characters, following `offset`; `exists_many` asks for no fields.
/// - Queries: a formula of equalities on the mapped fields (a single link compares on its
///   `{field}_id` lookup, the source name the derive gives it), Airtable's `sort`, every page;
///   then the cache's exact comparison and order (by value, ties by id) and the page's offset
///   and limit are applied here, so that the answer is the one every other origin gives.
/// - Empty cells: Airtable leaves out empty cells; the origin puts back the one empty value a
///   non-optional `String` (`""`), `bool` (`false`) or `Links<T>` (`[]`) field can have.
///   Other absent fields stay absent (an `Option` reads `None`).
/// - `delete` reads the record first when the model has a version (Airtable returns nothing
///   of a deleted record), then deletes it; [`AirtableOrigin::delete_many`] deletes in
///   batches of 10.
///
/// Every request goes through the client's limits ([`AirtableClient`]).
#[derive(Debug, Clone)]
pub struct AirtableOrigin {
    client: AirtableClient,
    tables: HashMap<&'static str, String>,
}

impl AirtableOrigin {
    /// The origin on the client's base.
    pub fn new(client: AirtableClient) -> Self {
        Self {
            client,
            tables: HashMap::new(),
        }
    }

    /// Reads `entity` (its name, `projects`) from `table` (a name or a `tbl…` id) instead of
    /// its `source_table`.
    #[must_use]
    pub fn with_table(mut self, entity: &'static str, table: impl Into<String>) -> Self {
        self.tables.insert(entity, table.into());
        self
    }

    /// The client (share it with the change feed: one rate limit for both).
    pub fn client(&self) -> &AirtableClient {
        &self.client
    }

    /// The table an entity is read from.
    pub fn table_of<'a>(&'a self, entity: &'a EntitySchema) -> &'a str {
        self.tables
            .get(entity.entity)
            .map_or(entity.source_table, String::as_str)
    }

    /// Deletes records in batches of 10; answers what each deleted record was (ids Airtable
    /// did not have are left out). Reads the records first when the model has a version.
    pub async fn delete_many(
        &self,
        entity: &'static EntitySchema,
        ids: &[RecordId],
    ) -> Result<Vec<(RecordId, Deletion)>, OriginError> {
        let table = self.table_of(entity);
        let mut before: HashMap<RecordId, SourceRecord> = HashMap::new();
        if entity.version_field.is_some() {
            for record in self.fetch_many(entity, ids).await? {
                before.insert(record.id.clone(), record);
            }
        }
        let mut deleted = Vec::new();
        for chunk in ids.chunks(MAX_RECORDS_PER_BATCH) {
            let names: Vec<&str> = chunk.iter().map(RecordId::as_str).collect();
            let gone = match self.client.delete_records(table, &names).await {
                Ok(gone) => gone,
                // One unknown id fails the whole batch: delete the batch's ids one by one.
                Err(err) if err.is_record_not_found() => {
                    let mut gone = Vec::new();
                    for name in names {
                        match self.client.delete_records(table, &[name]).await {
                            Ok(ids) => gone.extend(ids),
                            Err(err) if err.is_record_not_found() => {}
                            Err(err) => return Err(err.into()),
                        }
                    }
                    gone
                }
                Err(err) => return Err(err.into()),
            };
            for id in gone {
                let id = record_id(&id)?;
                let deletion = self.deletion(entity, before.remove(&id));
                deleted.push((id, deletion));
            }
        }
        Ok(deleted)
    }

    fn deletion(&self, entity: &'static EntitySchema, before: Option<SourceRecord>) -> Deletion {
        let mut deletion = Deletion::new();
        if let Some(record) = before {
            let version = entity
                .version_field
                .and_then(|name| entity.field(name))
                .and_then(|field| score(record.fields.get(field.source_name)));
            if let Some(version) = version.filter(|v| v.is_finite()) {
                deletion = deletion.with_version(version);
            }
            deletion = deletion.with_record(record);
        }
        deletion
    }

    /// Lists the records with the given ids, in chunks that keep each URL under the limit.
    async fn list_ids(
        &self,
        entity: &'static EntitySchema,
        ids: &[RecordId],
        fields: Option<Vec<String>>,
    ) -> Result<Vec<Record>, AirtableError> {
        let table = self.table_of(entity);
        let budget = self.client.max_url_len().saturating_sub(URL_HEADROOM + table.len() * 3);
        let mut records = Vec::new();
        let mut chunk: Vec<&str> = Vec::new();
        let mut encoded = 0;
        for id in ids {
            // `RECORD_ID()='…',` percent-encoded.
            let term = encoded_len(&format!("RECORD_ID()={},", formula::string_literal(id.as_str())));
            if !chunk.is_empty() && (chunk.len() >= MAX_PAGE_SIZE as usize || encoded + term > budget) {
                records.extend(self.list_chunk(table, &chunk, fields.clone()).await?);
                chunk.clear();
                encoded = 0;
            }
            chunk.push(id.as_str());
            encoded += term;
        }
        if !chunk.is_empty() {
            records.extend(self.list_chunk(table, &chunk, fields).await?);
        }
        Ok(records)
    }

    async fn list_chunk(
        &self,
        table: &str,
        ids: &[&str],
        fields: Option<Vec<String>>,
    ) -> Result<Vec<Record>, AirtableError> {
        let params = ListRecords {
            filter_by_formula: Some(formula::record_ids(ids)),
            fields,
            ..ListRecords::default()
        };
        self.client.list_all(table, &params).await
    }
}

fn encoded_len(text: &str) -> usize {
    form_urlencoded::byte_serialize(text.as_bytes()).map(str::len).sum()
}

fn record_id(id: &str) -> Result<RecordId, OriginError> {
    RecordId::new(id).map_err(|e| OriginError::failed(format!("Airtable answered an invalid record id {id:?}: {e}")))
}

/// How a field's cells compare: by the Rust type the model declares.
fn cell_kind(field: &FieldSchema) -> CellKind {
    if !matches!(field.kind, FieldKind::Scalar) {
        return CellKind::Text;
    }
    let ty: String = field.rust_type.chars().filter(|c| !c.is_whitespace()).collect();
    let ty = ty
        .strip_prefix("Option<")
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(&ty);
    match ty {
        "bool" => CellKind::Checkbox,
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "f32"
        | "f64" => CellKind::Number,
        _ => CellKind::Text,
    }
}

fn is_string(field: &FieldSchema) -> bool {
    !field.optional && field.rust_type.trim() == "String"
}

/// A record in the source shape the models read, with the empty values Airtable leaves out
/// put back where they have one meaning.
fn to_source(entity: &EntitySchema, record: Record) -> Result<SourceRecord, OriginError> {
    let mut fields = record.fields;
    for field in &entity.fields {
        if field.optional || fields.contains_key(field.source_name) {
            continue;
        }
        let empty = match (field.kind, cell_kind(field)) {
            (FieldKind::Links { .. }, _) => Value::Array(Vec::new()),
            (FieldKind::Scalar, CellKind::Checkbox) => Value::Bool(false),
            (FieldKind::Scalar, CellKind::Text) if is_string(field) => Value::String(String::new()),
            _ => continue,
        };
        fields.insert(field.source_name.to_owned(), empty);
    }
    Ok(SourceRecord {
        id: record_id(&record.id)?,
        fields,
    })
}

/// A cell as the cache's index entry for it (what `IndexValue` gives the model's value).
fn tag(field: &FieldSchema, value: Option<&Value>) -> Option<String> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return absent_tag(field);
    };
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{}", f as i64),
            (_, _, Some(f)) => f.to_string(),
            _ => return None,
        },
        Value::Array(items) => match items.as_slice() {
            [Value::String(one)] => one.clone(),
            _ => return None,
        },
        _ => return None,
    };
    Some(field.index.map_or(text.clone(), |kind| kind.normalize(text)))
}

/// The index entry of an absent cell: none, unless the model gives the field a default
/// (`#[cache(default)]`): then its type's default, `0`, `false`, `""`. (The schema does not
/// tell a default function from the type's default: a query on a value such a function
/// returns misses the absent cells.)
fn absent_tag(field: &FieldSchema) -> Option<String> {
    if !field.default || field.optional {
        return None;
    }
    let text = match cell_kind(field) {
        CellKind::Number => "0",
        CellKind::Checkbox => "false",
        CellKind::Text if field.rust_type.trim() == "String" => "",
        CellKind::Text => return None,
    };
    Some(
        field
            .index
            .map_or(text.to_owned(), |kind| kind.normalize(text.to_owned())),
    )
}

/// A cell as a sort score: numbers as they are, dates (ISO 8601) as milliseconds since the
/// epoch, anything else (and an empty cell) `-inf`, as the cache scores an absent value.
fn score(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64().filter(|f| !f.is_nan()),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis() as f64)
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc().timestamp_millis() as f64)
            }),
        _ => None,
    }
}

#[async_trait]
impl Origin for AirtableOrigin {
    async fn fetch(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<SourceRecord>, OriginError> {
        match self.client.get_record(self.table_of(entity), id.as_str()).await? {
            Some(record) => Ok(Some(to_source(entity, record)?)),
            None => Ok(None),
        }
    }

    async fn fetch_many(
        &self,
        entity: &'static EntitySchema,
        ids: &[RecordId],
    ) -> Result<Vec<SourceRecord>, OriginError> {
        let records = self.list_ids(entity, ids, None).await?;
        records.into_iter().map(|r| to_source(entity, r)).collect()
    }

    async fn query(
        &self,
        entity: &'static EntitySchema,
        query: &SourceQuery,
    ) -> Result<Vec<SourceRecord>, OriginError> {
        if query.limit == Some(0) {
            return Ok(Vec::new());
        }
        let mut terms = Vec::with_capacity(query.filters.len());
        for filter in &query.filters {
            let lowercase = filter.field.index == Some(cache_core::schema::IndexKind::Lowercase);
            match formula::equals(
                filter.field.source_name,
                cell_kind(filter.field),
                &filter.value,
                lowercase,
            ) {
                Ok(term) => terms.push(term),
                // A value no cell of the field can hold (`two` for a number) matches nothing.
                Err(AirtableError::Limit(_)) if formula::field_ref(filter.field.source_name).is_ok() => {
                    return Ok(Vec::new());
                }
                Err(err) => return Err(OriginError::Unsupported(err.to_string())),
            }
        }
        let sort = query
            .sort
            .map(|(field, order)| SortBy {
                field: field.source_name.to_owned(),
                direction: match order {
                    cache_core::Order::Asc => Direction::Asc,
                    cache_core::Order::Desc => Direction::Desc,
                },
            })
            .into_iter()
            .collect();
        let params = ListRecords {
            filter_by_formula: formula::and(&terms),
            sort,
            ..ListRecords::default()
        };
        let records = self.client.list_all(self.table_of(entity), &params).await?;
        let mut matching = Vec::with_capacity(records.len());
        for record in records {
            let record = to_source(entity, record)?;
            // Airtable's `=` is looser than the cache's index (it joins arrays, coerces
            // numbers): keep exactly what the cache's index would file under the value.
            let holds = query
                .filters
                .iter()
                .all(|f| tag(f.field, record.fields.get(f.field.source_name)).as_deref() == Some(f.value.as_str()));
            if holds {
                let score = query
                    .sort
                    .and_then(|(field, _)| score(record.fields.get(field.source_name)))
                    .unwrap_or(f64::NEG_INFINITY);
                matching.push((score, record));
            }
        }
        let direction = query.sort.map(|(_, order)| order);
        matching.sort_by(|a, b| order::compare_scored((a.0, &a.1.id), (b.0, &b.1.id), direction));
        Ok(matching
            .into_iter()
            .skip(query.offset)
            .take(query.limit.unwrap_or(usize::MAX))
            .map(|(_, record)| record)
            .collect())
    }

    async fn exists_many(&self, entity: &'static EntitySchema, ids: &[RecordId]) -> Result<Vec<RecordId>, OriginError> {
        let records = self.list_ids(entity, ids, Some(Vec::new())).await?;
        records.iter().map(|r| record_id(&r.id)).collect()
    }

    async fn delete(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<Deletion>, OriginError> {
        let deleted = self.delete_many(entity, std::slice::from_ref(id)).await?;
        Ok(deleted.into_iter().next().map(|(_, deletion)| deletion))
    }
}

/// When a payload's change happened, for [`cache_core::change::Change::at`].
pub(crate) fn parse_time(text: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
}

#[cfg(test)]
mod tests {
    use cache_core::schema::IndexKind;
    use serde_json::json;

    use super::*;

    #[test]
    fn cell_kinds_follow_the_rust_type() {
        assert_eq!(cell_kind(&FieldSchema::scalar("a", "bool")), CellKind::Checkbox);
        assert_eq!(cell_kind(&FieldSchema::scalar("a", "Option < u32 >")), CellKind::Number);
        assert_eq!(cell_kind(&FieldSchema::scalar("a", "String")), CellKind::Text);
        assert_eq!(cell_kind(&FieldSchema::scalar("a", "Status")), CellKind::Text);
    }

    #[test]
    fn tags_mirror_the_cache_index() {
        let mut email = FieldSchema::scalar("email", "String");
        email.index = Some(IndexKind::Lowercase);
        assert_eq!(tag(&email, Some(&json!(" A@B.c "))).as_deref(), Some("a@b.c"));
        let level = FieldSchema::scalar("level", "i64");
        assert_eq!(tag(&level, Some(&json!(2))).as_deref(), Some("2"));
        assert_eq!(tag(&level, Some(&json!(2.0))).as_deref(), Some("2"));
        assert_eq!(tag(&level, None), None);
        let link = FieldSchema::scalar("team", "Link<Team>");
        assert_eq!(tag(&link, Some(&json!(["t1"]))).as_deref(), Some("t1"));
        assert_eq!(tag(&link, Some(&json!(["t1", "t2"]))), None);
        let mut points = FieldSchema::scalar("points", "i64");
        assert_eq!(tag(&points, None), None, "a required number has no entry when absent");
        points.default = true;
        assert_eq!(tag(&points, None).as_deref(), Some("0"), "absent takes the default");
        assert_eq!(tag(&points, Some(&Value::Null)).as_deref(), Some("0"));
    }

    #[test]
    fn scores_numbers_and_dates() {
        assert_eq!(score(Some(&json!(3))), Some(3.0));
        assert_eq!(score(Some(&json!("1970-01-01T00:00:01.000Z"))), Some(1000.0));
        assert_eq!(score(Some(&json!("1970-01-02"))), Some(86_400_000.0));
        assert_eq!(score(Some(&json!("soon"))), None);
        assert_eq!(score(None), None);
    }
}
