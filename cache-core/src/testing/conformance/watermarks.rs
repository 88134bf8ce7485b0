//! Watermarks: the per-record order of timed changes.

use super::*;

/// A watermark is raised, never lowered; an equal value is accepted again (a retried claim);
/// integers compare exactly, beyond what a double holds; concurrent claims leave the highest.
pub async fn watermark_only_moves_forward<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let advance = |key: &'static str, value: i64| {
        let store = Arc::clone(&store);
        async move {
            store
                .advance_watermark(key, value, LONG)
                .await
                .expect("advance_watermark")
        }
    };
    let read = |key: &'static str| {
        let store = Arc::clone(&store);
        async move { store.get_value(key).await.expect("get_value") }
    };
    assert!(advance("w", 10).await, "a missing watermark is set");
    assert_eq!(read("w").await, Some(Bytes::from_static(b"10")));
    assert!(!advance("w", 9).await, "a lower value is refused");
    assert_eq!(read("w").await, Some(Bytes::from_static(b"10")));
    assert!(advance("w", 10).await, "an equal value is accepted again");
    assert!(advance("w", 11).await);
    assert_eq!(read("w").await, Some(Bytes::from_static(b"11")));
    assert_eq!(read("other").await, None, "watermarks are per key");

    assert!(advance("big", i64::MAX).await);
    assert!(!advance("big", i64::MAX - 1).await, "compared exactly, not as doubles");
    assert!(advance("negative", -5).await);
    assert!(!advance("negative", -10).await);
    assert!(advance("negative", 0).await);
    assert!(!advance("negative", -1).await);

    store
        .put_value("garbage", Bytes::from_static(b"not a mark"), LONG, &[])
        .await
        .expect("put_value");
    assert!(
        advance("garbage", -1).await,
        "a value that is not an integer counts as missing"
    );

    let values = [7, 3, 19, 11, 20, 1, 15, 20, 4];
    let claims = futures::future::join_all(values.iter().map(|&v| advance("raced", v))).await;
    assert_eq!(read("raced").await, Some(Bytes::from_static(b"20")));
    for (value, claimed) in values.iter().zip(claims) {
        if *value == 20 {
            assert!(claimed, "the highest value is always accepted");
        }
    }
}
