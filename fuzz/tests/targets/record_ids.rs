//! Record ids from text (`RecordId::new`, `FromStr`, `TryFrom<String>`) and from JSON
//! (`RecordId`, `Link<T>`, `Option<Link<T>>` and `Links<T>`), as webhook payloads, path
//! parameters and source records carry them.

use cache_core::{InvalidId, Link, Links, RecordId, id::MAX_ID_LEN, keys};
use model_cache_fuzz::{Source, reference::is_valid_id};
use serde_json::Value;

use crate::{User, fuzz};

#[test]
fn record_ids() {
    fuzz!(4_000, 512, |input: &[u8]| {
        let mut source = Source::new(input);
        let text = match source.below(4) {
            // Long ones, around the length limit.
            0 => source.plain(MAX_ID_LEN + 8) + &source.text(4),
            _ => source.text(24),
        };
        check_text(&text);
        check_json(&mut source, &text);
    });
}

/// Accepted exactly when valid; an accepted id is the text, a refusal says why.
fn check_text(text: &str) {
    let parsed = RecordId::new(text);
    assert_eq!(parsed.is_ok(), is_valid_id(text), "{text:?}: {parsed:?}");
    assert_eq!(text.parse::<RecordId>(), parsed);
    assert_eq!(RecordId::try_from(text.to_owned()), parsed);
    match parsed {
        Ok(id) => {
            assert_eq!(id.as_str(), text);
            assert_eq!(id.to_string(), text);
            // The id is one key component: the tags around it keep their shape.
            assert_eq!(keys::record_tag("projects", &id).matches(':').count(), 1);
            assert_eq!(keys::order_key("projects", &id).matches(':').count(), 2);
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<RecordId>(&json).unwrap(), id);
        }
        Err(InvalidId::Empty) => assert!(text.is_empty()),
        Err(InvalidId::TooLong { len }) => {
            assert_eq!(len, text.len());
            assert!(len > MAX_ID_LEN);
        }
        Err(InvalidId::ForbiddenChar { ch, at, id }) => {
            assert!(text.len() <= MAX_ID_LEN, "the length is checked first");
            assert_eq!(text[at..].chars().next(), Some(ch), "{text:?}");
            assert!(!is_valid_id(&ch.to_string()), "{ch:?} is allowed");
            assert!(
                is_valid_id(&text[..at]) || at == 0,
                "{text:?}: not the first bad character"
            );
            assert_eq!(id, text);
        }
    }
}

/// A JSON value with ids (or not) where ids are expected.
fn json_id(source: &mut Source<'_>, text: &str) -> (Value, Option<RecordId>) {
    match source.below(8) {
        0 => {
            let n = source.edgy_i64();
            (Value::from(n), Some(RecordId::new(n.to_string()).unwrap()))
        }
        1 => {
            let n = source.edgy_u64();
            (Value::from(n), Some(RecordId::new(n.to_string()).unwrap()))
        }
        2 => (Value::from(-0.5 * source.byte() as f64), None),
        3 => (Value::Null, None),
        4 => (Value::Bool(true), None),
        5 => {
            let other = source.text(12);
            let id = RecordId::new(&other).ok();
            (Value::String(other), id)
        }
        _ => (Value::String(text.to_owned()), RecordId::new(text).ok()),
    }
}

fn check_json(source: &mut Source<'_>, text: &str) {
    let (single, single_id) = json_id(source, text);
    let doc = single.to_string();
    let id = serde_json::from_str::<RecordId>(&doc);
    assert_eq!(id.as_ref().ok(), single_id.as_ref(), "{doc}");
    let link = serde_json::from_str::<Link<User>>(&doc);
    assert_eq!(link.as_ref().ok().map(Link::id), single_id.as_ref(), "{doc}");
    let optional = serde_json::from_str::<Option<Link<User>>>(&doc);
    match (&single, &optional) {
        (Value::Null, Ok(None)) => {}
        (_, Ok(Some(link))) => assert_eq!(Some(link.id()), single_id.as_ref(), "{doc}"),
        (_, Err(_)) => assert!(single_id.is_none(), "{doc}"),
        (_, Ok(None)) => panic!("{doc} read as no link"),
    }

    // Arrays: a `Link` takes exactly one valid id, `Links` any number of them.
    let n = source.below(4);
    let (items, ids): (Vec<Value>, Vec<Option<RecordId>>) = (0..n).map(|_| json_id(source, text)).unzip();
    let array = Value::Array(items).to_string();
    let all_valid: Option<Vec<RecordId>> = ids.iter().cloned().collect();
    let link = serde_json::from_str::<Link<User>>(&array);
    match (&link, n) {
        (Ok(link), 1) => assert_eq!(Some(link.id()), ids[0].as_ref(), "{array}"),
        (Ok(link), _) => panic!("{array} read as one link {link:?}"),
        (Err(_), 1) => assert!(ids[0].is_none(), "{array}"),
        (Err(_), _) => {}
    }
    let links = serde_json::from_str::<Links<User>>(&array);
    assert_eq!(links.as_ref().ok().map(|l| l.ids().to_vec()), all_valid, "{array}");
    if let Ok(links) = links {
        let round_trip: Links<User> = serde_json::from_value(links.to_source()).unwrap();
        assert_eq!(round_trip, links);
    }
    assert!(serde_json::from_str::<Links<User>>("null").unwrap().is_empty());

    // Anything else, raw: never a panic, and never an id that is not valid.
    let raw = source.text(32);
    for doc in [raw.clone(), format!("[{raw}]"), format!("\"{raw}\"")] {
        if let Ok(id) = serde_json::from_str::<RecordId>(&doc) {
            assert!(is_valid_id(id.as_str()), "{doc}");
        }
        if let Ok(links) = serde_json::from_str::<Links<User>>(&doc) {
            assert!(links.ids().iter().all(|id| is_valid_id(id.as_str())), "{doc}");
        }
        let _ = serde_json::from_str::<Link<User>>(&doc);
    }
}
