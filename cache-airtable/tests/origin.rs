//! `AirtableOrigin` and its client against the Airtable simulator.

use std::{sync::LazyLock, time::Duration};

use async_trait::async_trait;
use cache_airtable::{
    AirtableClient, AirtableConfig, AirtableError, AirtableOrigin, ListRecords, OnRateLimit,
    testing::{SimConfig, Simulator},
};
use cache_core::{
    RecordId,
    origin::{Deletion, Origin, OriginError, SourceFilter, SourceQuery, SourceRecord},
    schema::{EntitySchema, FieldSchema, IndexKind},
    testing::origin_conformance::OriginSeed,
};
use serde_json::{Map, Value, json};

const BASE: &str = "appTestBase000001";

fn client(sim: &Simulator) -> AirtableClient {
    client_with(sim, |c| c)
}

fn client_with(sim: &Simulator, f: impl FnOnce(AirtableConfig) -> AirtableConfig) -> AirtableClient {
    let config = AirtableConfig::new(BASE, sim.token())
        .api_url(sim.url())
        .retries(3, Duration::from_millis(10));
    AirtableClient::new(f(config)).expect("a valid configuration")
}

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn rid(s: &str) -> RecordId {
    RecordId::new(s).expect("a valid id")
}

/// The origin and the simulator it reads, dropped together.
struct SimOrigin {
    origin: AirtableOrigin,
    _sim: Simulator,
}

#[async_trait]
impl Origin for SimOrigin {
    async fn fetch(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<SourceRecord>, OriginError> {
        self.origin.fetch(entity, id).await
    }
    async fn fetch_many(
        &self,
        entity: &'static EntitySchema,
        ids: &[RecordId],
    ) -> Result<Vec<SourceRecord>, OriginError> {
        self.origin.fetch_many(entity, ids).await
    }
    async fn query(
        &self,
        entity: &'static EntitySchema,
        query: &SourceQuery,
    ) -> Result<Vec<SourceRecord>, OriginError> {
        self.origin.query(entity, query).await
    }
    async fn exists_many(&self, entity: &'static EntitySchema, ids: &[RecordId]) -> Result<Vec<RecordId>, OriginError> {
        self.origin.exists_many(entity, ids).await
    }
    async fn delete(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<Deletion>, OriginError> {
        self.origin.delete(entity, id).await
    }
}

async fn seeded_origin(seed: OriginSeed) -> Option<SimOrigin> {
    let sim = Simulator::start().await.expect("the simulator starts");
    for (schema, records) in seed.entities {
        sim.create_table(BASE, schema.source_table);
        for record in records {
            assert!(sim.insert_with_id(BASE, schema.source_table, record.id.as_str(), record.fields));
        }
    }
    Some(SimOrigin {
        origin: AirtableOrigin::new(client(&sim)),
        _sim: sim,
    })
}

mod conformance {
    cache_core::origin_conformance_tests!(super::seeded_origin);
}

// ------------------------------------------------------------------ a table of notes

fn notes() -> &'static EntitySchema {
    static SCHEMA: LazyLock<EntitySchema> = LazyLock::new(|| {
        let mut title = FieldSchema::scalar("title", "String");
        title.index = Some(IndexKind::Exact);
        let mut done = FieldSchema::scalar("done", "bool");
        done.index = Some(IndexKind::Exact);
        let mut tags = FieldSchema::scalar("tags", "Links<Tag>");
        tags.kind = cache_core::schema::FieldKind::Links { target: notes };
        EntitySchema::builder("notes")
            .source_table("Notes")
            .field(title)
            .field(done)
            .field(tags)
            .field(FieldSchema::scalar("body", "String"))
            .build()
    });
    &SCHEMA
}

fn title_is(value: &str) -> SourceQuery {
    SourceQuery {
        filters: vec![SourceFilter {
            field: notes().field("title").expect("a field"),
            value: value.to_owned(),
        }],
        sort: None,
        offset: 0,
        limit: None,
    }
}

#[tokio::test]
async fn formula_values_cannot_change_the_formula() {
    let sim = Simulator::start().await.expect("starts");
    let hostile = [
        "it's",
        "say \"hi\"",
        "back\\slash",
        "trailing\\",
        "\\'",
        "{title}",
        "two\nlines",
        "tab\there",
        "x', TRUE(), '",
        "x\", TRUE(), \"",
        "') OR TRUE() OR ('",
    ];
    let mut ids = Vec::new();
    for title in hostile {
        ids.push(sim.insert(BASE, "Notes", fields(json!({ "title": title, "body": "b" }))));
    }
    sim.insert(BASE, "Notes", fields(json!({ "title": "x", "body": "innocent" })));
    sim.insert(BASE, "Notes", fields(json!({ "title": "", "body": "untitled" })));
    let origin = AirtableOrigin::new(client(&sim));
    for (title, id) in hostile.iter().zip(&ids) {
        let found = origin
            .query(notes(), &title_is(title))
            .await
            .expect("the query answers");
        let found: Vec<&str> = found.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(found, [id.as_str()], "exactly the record titled {title:?}");
    }
    // A value nobody holds matches nothing (and is not an error).
    assert!(
        origin
            .query(notes(), &title_is("x' OR '1'='1"))
            .await
            .expect("answers")
            .is_empty()
    );
}

#[tokio::test]
async fn empty_cells_are_left_out_by_airtable_and_put_back_by_the_origin() {
    let sim = Simulator::start().await.expect("starts");
    let id = sim.insert(
        BASE,
        "Notes",
        fields(json!({ "title": "t", "done": false, "tags": [], "body": "" })),
    );
    assert_eq!(
        sim.record(BASE, "Notes", &id),
        Some(fields(json!({ "title": "t" }))),
        "stored without empty cells"
    );
    let record = AirtableOrigin::new(client(&sim))
        .fetch(notes(), &rid(&id))
        .await
        .expect("answers")
        .expect("found");
    assert_eq!(
        Value::Object(record.fields),
        json!({ "title": "t", "done": false, "tags": [], "body": "" })
    );
}

#[tokio::test]
async fn bool_filters_match_empty_checkboxes() {
    let sim = Simulator::start().await.expect("starts");
    let open = sim.insert(BASE, "Notes", fields(json!({ "title": "a", "done": false })));
    let closed = sim.insert(BASE, "Notes", fields(json!({ "title": "b", "done": true })));
    let origin = AirtableOrigin::new(client(&sim));
    for (value, want) in [("false", &open), ("true", &closed)] {
        let query = SourceQuery {
            filters: vec![SourceFilter {
                field: notes().field("done").expect("a field"),
                value: value.to_owned(),
            }],
            sort: None,
            offset: 0,
            limit: None,
        };
        let found = origin.query(notes(), &query).await.expect("answers");
        assert_eq!(found.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [want.as_str()]);
    }
}

#[tokio::test]
async fn lists_follow_every_page_and_chunk_ids() {
    let sim = Simulator::start_with(
        SimConfig {
            requests_per_second: 0,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("an address"),
    )
    .await
    .expect("starts");
    let ids: Vec<RecordId> = (0..250)
        .map(|n| rid(&sim.insert(BASE, "Notes", fields(json!({ "title": format!("n{n}") })))))
        .collect();
    let origin = AirtableOrigin::new(client(&sim));
    let all = origin
        .query(
            notes(),
            &SourceQuery {
                filters: vec![],
                sort: None,
                offset: 0,
                limit: None,
            },
        )
        .await
        .expect("answers");
    assert_eq!(all.len(), 250);
    assert_eq!(sim.stats(BASE).list_requests, 3, "pages of 100");
    let fetched = origin.fetch_many(notes(), &ids).await.expect("answers");
    assert_eq!(fetched.len(), 250);
    assert_eq!(sim.stats(BASE).list_requests, 6, "chunks of 100 ids, one page each");
    let present = origin.exists_many(notes(), &ids[..120]).await.expect("answers");
    assert_eq!(present.len(), 120);
    assert_eq!(sim.stats(BASE).list_requests, 8);
}

#[tokio::test]
async fn long_ids_are_chunked_under_the_url_limit() {
    let sim = Simulator::start_with(
        SimConfig {
            requests_per_second: 0,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("an address"),
    )
    .await
    .expect("starts");
    let ids: Vec<RecordId> = (0..150)
        .map(|n| {
            let id = format!("rec{n:0>200}");
            sim.insert_with_id(BASE, "Notes", &id, fields(json!({ "title": "t" })));
            rid(&id)
        })
        .collect();
    let origin = AirtableOrigin::new(client(&sim));
    let fetched = origin.fetch_many(notes(), &ids).await.expect("every chunk fits");
    assert_eq!(fetched.len(), 150);
    assert!(
        sim.stats(BASE).list_requests > 2,
        "more chunks than 100 ids a request would need"
    );
    // The client refuses a URL over the limit before sending it.
    let c = client(&sim);
    let long = format!("RECORD_ID()='{}'", "r".repeat(20_000));
    let page = c
        .list_records(
            "Notes",
            &ListRecords {
                filter_by_formula: Some(long),
                ..ListRecords::default()
            },
        )
        .await
        .expect("too long for a GET: sent as POST listRecords");
    assert!(page.records.is_empty());
}

#[tokio::test]
async fn errors_are_never_not_found() {
    let sim = Simulator::start().await.expect("starts");
    let id = sim.insert(BASE, "Notes", fields(json!({ "title": "t" })));
    let wrong_token = AirtableOrigin::new(
        AirtableClient::new(AirtableConfig::new(BASE, "patWrong").api_url(sim.url())).expect("valid"),
    );
    let err = wrong_token
        .fetch(notes(), &rid(&id))
        .await
        .expect_err("401 is an error");
    assert!(err.to_string().contains("AUTHENTICATION_REQUIRED"), "{err}");
    let origin = AirtableOrigin::new(client(&sim)).with_table("notes", "NoSuchTable");
    let err = origin.fetch(notes(), &rid(&id)).await.expect_err("403 is an error");
    assert!(
        err.to_string().contains("INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND"),
        "{err}"
    );
    let origin = AirtableOrigin::new(client(&sim));
    assert!(
        origin
            .fetch(notes(), &rid("recMissing"))
            .await
            .expect("answers")
            .is_none(),
        "404 is not found"
    );
    sim.fail_next(&[422]);
    assert!(origin.fetch(notes(), &rid(&id)).await.is_err(), "422 is an error");
    sim.fail_next(&[500, 503]);
    assert!(
        origin.fetch(notes(), &rid(&id)).await.expect("retried").is_some(),
        "5xx is retried"
    );
    sim.fail_next(&[500, 502, 503]);
    let err = origin
        .fetch(notes(), &rid(&id))
        .await
        .expect_err("3 attempts, 3 failures");
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test]
async fn the_simulator_refuses_formulas_outside_the_subset() {
    let sim = Simulator::start().await.expect("starts");
    sim.insert(BASE, "Notes", fields(json!({ "title": "t" })));
    let err = client(&sim)
        .list_records(
            "Notes",
            &ListRecords {
                filter_by_formula: Some("SEARCH('t',{title})".to_owned()),
                ..ListRecords::default()
            },
        )
        .await
        .expect_err("422");
    assert_eq!(err.kind(), Some("INVALID_FILTER_BY_FORMULA"));
    assert_eq!(err.status(), Some(422));
}

#[tokio::test]
async fn a_429_pauses_the_base_and_fails_fast_when_configured() {
    let sim = Simulator::start().await.expect("starts");
    let id = sim.insert(BASE, "Notes", fields(json!({ "title": "t" })));
    let fast = AirtableOrigin::new(client_with(&sim, |c| c.on_rate_limit(OnRateLimit::FailFast)));
    sim.fail_next(&[429]);
    let err = fast.fetch(notes(), &rid(&id)).await.expect_err("rate limited");
    assert!(
        matches!(err, OriginError::RateLimited { retry_after_ms: 30_000 }),
        "{err}"
    );
    let before = sim.stats(BASE).requests;
    let err = fast.fetch(notes(), &rid(&id)).await.expect_err("still paused");
    assert!(matches!(err, OriginError::RateLimited { .. }), "{err}");
    assert_eq!(
        sim.stats(BASE).requests,
        before,
        "nothing sent while the base is paused"
    );
    assert!(fast.client().is_paused());

    // Waiting: the call waits out the pause and then succeeds.
    let waiting = AirtableOrigin::new(client_with(&sim, |c| c.rate_limit_pause(Duration::from_millis(300))));
    sim.fail_next(&[429]);
    assert!(waiting.fetch(notes(), &rid(&id)).await.expect("waited").is_some());
    assert_eq!(sim.stats(BASE).requests, before + 2, "the 429 and the retry");
}

#[tokio::test]
async fn the_rate_limit_holds_under_64_concurrent_callers() {
    let sim = Simulator::start().await.expect("starts");
    let ids: Vec<RecordId> = (0..64)
        .map(|n| rid(&sim.insert(BASE, "Notes", fields(json!({ "title": format!("n{n}") })))))
        .collect();
    let origin = AirtableOrigin::new(client(&sim));
    let answers = futures::future::join_all(ids.iter().map(|id| {
        let origin = origin.clone();
        async move { origin.fetch(notes(), id).await }
    }))
    .await;
    for answer in answers {
        assert!(answer.expect("answered").is_some());
    }
    let stats = sim.stats(BASE);
    assert_eq!(stats.requests, 64, "one request a record");
    assert_eq!(stats.rate_limited, 0, "never over the simulator's 5 a second");
    // Requests leave at least 220 ms apart, so five span 880 ms: a sixth arrival within one
    // second of the first takes a delay of over 100 ms on the way (a loaded machine can stall
    // that long), hence the one request of tolerance; the simulator's bucket above refused
    // nothing.
    assert!(stats.max_per_second <= 6, "{stats:?}");
}

#[tokio::test]
async fn deletes_go_in_batches_of_ten_and_answer_versions() {
    let sim = Simulator::start_with(
        SimConfig {
            requests_per_second: 0,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("an address"),
    )
    .await
    .expect("starts");
    let ids: Vec<RecordId> = (0..25)
        .map(|n| rid(&sim.insert(BASE, "Notes", fields(json!({ "title": format!("n{n}") })))))
        .collect();
    let origin = AirtableOrigin::new(client(&sim));
    let before = sim.stats(BASE).requests;
    let mut asked = ids.clone();
    asked.push(rid("recNotThere"));
    let deleted = origin.delete_many(notes(), &asked).await.expect("deletes");
    assert_eq!(deleted.len(), 25);
    assert_eq!(sim.count(BASE, "Notes"), 0);
    // 3 batches, the last of which (6 ids, one unknown) is retried one by one.
    assert_eq!(sim.stats(BASE).requests - before, 3 + 6);
    let err = client(&sim)
        .delete_records("Notes", &["a"; 11])
        .await
        .expect_err("11 is over the batch limit");
    assert!(matches!(err, AirtableError::Limit(_)), "{err}");
}

#[tokio::test]
async fn the_simulator_is_seeded_over_http() {
    let sim = Simulator::start().await.expect("starts");
    sim.create_base(BASE);
    let created = reqwest::Client::new()
        .post(format!("{}/v0/meta/bases/{BASE}/tables", sim.url()))
        .bearer_auth(sim.token())
        .json(&json!({ "name": "Notes" }))
        .send()
        .await
        .expect("answers");
    assert_eq!(created.status(), 200);
    let c = client(&sim);
    let tables = c.list_tables().await.expect("listed");
    assert_eq!(tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["Notes"]);
    let records = c
        .create_records(
            "Notes",
            vec![
                fields(json!({ "title": "a", "done": false })),
                fields(json!({ "title": "b", "tags": [] })),
            ],
        )
        .await
        .expect("created");
    assert_eq!(records.len(), 2);
    assert_eq!(
        Value::Object(records[0].fields.clone()),
        json!({ "title": "a" }),
        "empty cells left out"
    );
    let updated = c
        .update_records(
            "Notes",
            vec![(records[1].id.clone(), fields(json!({ "title": "b2", "done": true })))],
        )
        .await
        .expect("updated");
    assert_eq!(
        Value::Object(updated[0].fields.clone()),
        json!({ "title": "b2", "done": true })
    );
    assert_eq!(sim.count(BASE, "Notes"), 2);

    // A failed create is not sent again: it may have happened.
    sim.fail_next(&[503]);
    let before = sim.stats(BASE).requests;
    let err = c
        .create_records("Notes", vec![fields(json!({ "title": "c" }))])
        .await
        .expect_err("503");
    assert_eq!(err.status(), Some(503));
    assert_eq!(sim.stats(BASE).requests, before + 1);
    let err = c
        .create_records("Notes", (0..11).map(|_| Map::new()).collect())
        .await
        .expect_err("over the batch limit");
    assert!(matches!(err, AirtableError::Limit(_)), "{err}");
    // An unknown base is Airtable's 403.
    let other = AirtableClient::new(AirtableConfig::new("appOther", sim.token()).api_url(sim.url())).expect("valid");
    assert_eq!(other.list_tables().await.expect_err("403").status(), Some(403));
    // The client refuses an https URL without the `tls` feature, and a bad rate.
    if !cfg!(feature = "tls") {
        assert!(matches!(
            AirtableClient::new(AirtableConfig::new(BASE, "t")),
            Err(AirtableError::Config(_))
        ));
    }
    assert!(matches!(
        AirtableClient::new(AirtableConfig::new(BASE, "t").api_url(sim.url()).requests_per_second(6)),
        Err(AirtableError::Config(_))
    ));
}

#[tokio::test]
async fn an_absent_defaulted_number_is_found_as_its_default() {
    static VOTES: LazyLock<EntitySchema> = LazyLock::new(|| {
        let mut points = FieldSchema::scalar("points", "i64");
        points.index = Some(IndexKind::Exact);
        points.default = true;
        EntitySchema::builder("votes")
            .source_table("Votes")
            .field(points)
            .build()
    });
    let sim = Simulator::start().await.expect("starts");
    let zero = sim.insert(BASE, "Votes", fields(json!({ "points": 0 })));
    let empty = sim.insert(BASE, "Votes", fields(json!({})));
    sim.insert(BASE, "Votes", fields(json!({ "points": 3 })));
    let query = SourceQuery {
        filters: vec![SourceFilter {
            field: VOTES.field("points").expect("a field"),
            value: "0".to_owned(),
        }],
        sort: None,
        offset: 0,
        limit: None,
    };
    let found = AirtableOrigin::new(client(&sim))
        .query(&VOTES, &query)
        .await
        .expect("answers");
    let mut want = vec![zero, empty];
    want.sort();
    assert_eq!(found.iter().map(|r| r.id.as_str().to_owned()).collect::<Vec<_>>(), want);
}
