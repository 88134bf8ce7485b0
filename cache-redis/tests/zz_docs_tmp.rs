use std::time::Duration;
use bytes::Bytes;
use cache_core::{EntitySchema, FieldSchema, IndexEntries, IndexKind, IndexQuery, QueryLookup, RecordId, RecordWrite, RemoveMode, Store, WriteMode};
use std::sync::LazyLock;

fn projects() -> &'static EntitySchema {
    static S: LazyLock<EntitySchema> = LazyLock::new(|| {
        let mut event = FieldSchema::scalar("event", "Link<Event>");
        event.index = Some(IndexKind::Exact);
        let mut points = FieldSchema::scalar("points", "i64");
        points.sortable = true;
        EntitySchema::builder("projects").field(FieldSchema::scalar("name", "String")).field(event).field(points).build()
    });
    &S
}

fn w(id: &str, name: &str, event: &str, points: f64) -> RecordWrite {
    RecordWrite {
        id: RecordId::new(id).unwrap(),
        body: Bytes::from(format!(r#"{{"id":"{id}","name":"{name}","event":"{event}","points":{points}}}"#)),
        index: IndexEntries { tags: vec![("event".into(), event.into())], scores: vec![("points".into(), points)] },
        version: None,
        ttl: Duration::from_secs(8 * 3600),
    }
}

#[tokio::test]
async fn docs() {
    let url = std::env::var("DOCS_URL").unwrap();
    let store = cache_redis::RedisStore::connect(url).await.unwrap();
    let p = projects();
    let q = IndexQuery::all().filter("event", "recE1".into());
    let QueryLookup::Incomplete(t) = store.query(p, &q).await.unwrap() else { panic!() };
    store.complete_query(p, &q, t, &[w("recP1", "Solar kiln", "recE1", 12.0), w("recP2", "Rain map", "recE1", 30.0)]).await.unwrap();
    store.put(p, &[w("recP3", "Seed bank", "recE2", 7.0)], WriteMode::Upsert).await.unwrap();
    store.remove(p, &[RecordId::new("recP9").unwrap()], RemoveMode::Tombstone(Duration::from_secs(6 * 3600))).await.unwrap();
    store.put_value("GET /events/recE1/projects", Bytes::from_static(b"[...]"), Duration::from_secs(60), &["projects?event=recE1".into()]).await.unwrap();
    println!("fp={}", p.fingerprint_hex());
}
