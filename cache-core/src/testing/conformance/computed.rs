//! Computed values: purge stamps, the compute lock and its waiters.

use super::*;

fn computed(value: &'static str, tags: &[&str], stamp: PurgeStamp, lock: Option<ComputeLock>) -> ComputedWrite {
    ComputedWrite {
        value: Bytes::from_static(value.as_bytes()),
        ttl: LONG,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        stamp,
        lock,
    }
}

async fn stamp(store: &dyn Store, key: &str) -> PurgeStamp {
    store.get_computed(key).await.expect("get_computed").stamp
}

async fn acquire(store: &dyn Store, key: &str, ttl: Duration) -> ComputeLock {
    match store.lock_computed(key, ttl).await.expect("lock_computed") {
        LockAttempt::Acquired(lock) => lock,
        LockAttempt::Held => panic!("the lock on {key} is free"),
    }
}

async fn is_held(store: &dyn Store, key: &str) -> bool {
    // Probing takes the lock when it is free: release it again.
    match store.lock_computed(key, LONG).await.expect("lock_computed") {
        LockAttempt::Held => true,
        LockAttempt::Acquired(lock) => {
            store.unlock_computed(key, lock).await.expect("unlock_computed");
            false
        }
    }
}

/// A computed value is a value: stored with its tags, read by `get_computed` and `get_value`,
/// removed by a purge of any of its tags.
pub async fn computed_values_are_values_purged_by_their_tags<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let lookup = store.get_computed("stats:e1").await.expect("get_computed");
    assert_eq!(lookup.value, None);
    let write = computed("S", &["projects?event=e1", "events:e1"], lookup.stamp, None);
    assert!(store.put_computed("stats:e1", &write).await.expect("put_computed"));
    let found = store.get_computed("stats:e1").await.expect("get_computed");
    assert_eq!(found.value, Some(Bytes::from_static(b"S")));
    assert_eq!(
        store.get_value("stats:e1").await.expect("get_value"),
        Some(Bytes::from_static(b"S"))
    );
    assert_eq!(store.purge_tags(&["events:e1".to_owned()]).await.expect("purge"), 1);
    assert_eq!(store.get_computed("stats:e1").await.expect("get_computed").value, None);
}

/// A value computed across a purge of one of its tags (the purge came after its lookup) is
/// refused; with other tags, or after a fresh lookup, it is stored.
pub async fn computed_value_refused_after_a_purge_of_its_tags<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let before = stamp(&*store, "stats:e1").await;
    // Nothing is recorded under the tag yet: the purge must still be remembered.
    assert_eq!(store.purge_tags(&["projects:p1".to_owned()]).await.expect("purge"), 0);
    let refused = computed("old", &["events:e1", "projects:p1"], before, None);
    assert!(!store.put_computed("stats:e1", &refused).await.expect("put_computed"));
    assert_eq!(store.get_computed("stats:e1").await.expect("get_computed").value, None);
    let unrelated = computed("other", &["users:u1"], before, None);
    assert!(store.put_computed("stats:u1", &unrelated).await.expect("put_computed"));
    let after = stamp(&*store, "stats:e1").await;
    let fresh_write = computed("new", &["events:e1", "projects:p1"], after, None);
    assert!(
        store
            .put_computed("stats:e1", &fresh_write)
            .await
            .expect("put_computed")
    );
    assert_eq!(
        store.get_computed("stats:e1").await.expect("get_computed").value,
        Some(Bytes::from_static(b"new"))
    );
}

/// One holder at a time; only its token releases the lock, by an unlock or by storing the
/// value (even a refused one).
pub async fn compute_lock_is_exclusive_until_released<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let lock = acquire(&*store, "k", LONG).await;
    assert_eq!(store.lock_computed("k", LONG).await.expect("lock"), LockAttempt::Held);
    assert!(!is_held(&*store, "other").await, "locks are per key");
    store
        .unlock_computed("k", ComputeLock(lock.0.wrapping_add(1)))
        .await
        .expect("unlock");
    assert!(is_held(&*store, "k").await, "another token does not release it");
    store.unlock_computed("k", lock).await.expect("unlock");
    let lock = acquire(&*store, "k", LONG).await;
    let s = stamp(&*store, "k").await;
    store.purge_tags(&["t".to_owned()]).await.expect("purge");
    let write = computed("v", &["t"], s, Some(lock));
    assert!(!store.put_computed("k", &write).await.expect("put_computed"), "refused");
    assert!(!is_held(&*store, "k").await, "a refused write still releases the lock");
    let lock = acquire(&*store, "k", LONG).await;
    let s = stamp(&*store, "k").await;
    assert!(
        store
            .put_computed("k", &computed("v", &[], s, Some(lock)))
            .await
            .expect("put")
    );
    assert!(!is_held(&*store, "k").await, "storing the value releases the lock");
}

/// A lock whose holder went away frees itself after its TTL.
pub async fn compute_lock_expires<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    acquire(&*store, "k", Duration::from_millis(5)).await;
    let s = &*store;
    eventually("the lock expires", || async move { !is_held(s, "k").await }).await;
}

/// Only the holder's token renews a lock, for the time to live it gives from now; a lock that
/// lapsed is not brought back.
pub async fn compute_lock_extends_for_its_holder_only<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let lock = acquire(&*store, "k", LONG).await;
    let another = ComputeLock(lock.0.wrapping_add(1));
    let short = Duration::from_millis(5);
    assert!(
        !store.extend_computed("k", another, short).await.expect("extend"),
        "another token does not"
    );
    assert!(
        !store.extend_computed("other", lock, LONG).await.expect("extend"),
        "locks are per key"
    );
    assert!(!is_held(&*store, "other").await, "extending takes no free lock");
    assert!(is_held(&*store, "k").await);
    // The holder's time to live counts from now: 5 ms here, after which the lock is free.
    assert!(
        store.extend_computed("k", lock, short).await.expect("extend"),
        "the holder's does"
    );
    // Watched without taking it: the lapsed lock may still be there with the holder's token.
    let s = &*store;
    eventually("the renewed lock expires", || async move {
        s.wait_computed("k", Duration::from_millis(1)).await.expect("wait") == LockWait::Released
    })
    .await;
    assert!(
        !store.extend_computed("k", lock, LONG).await.expect("extend"),
        "a lapsed lock is not brought back"
    );
    assert!(!is_held(&*store, "k").await);
}

/// A waiter gets the value its holder stores.
pub async fn waiter_is_woken_by_the_value<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let lock = acquire(&*store, "k", LONG).await;
    let waiter = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.wait_computed("k", Duration::from_secs(30)).await })
    };
    tokio::task::yield_now().await;
    let s = stamp(&*store, "k").await;
    assert!(
        store
            .put_computed("k", &computed("V", &[], s, Some(lock)))
            .await
            .expect("put")
    );
    let woken = waiter.await.expect("the waiter task").expect("wait_computed");
    assert_eq!(woken, LockWait::Value(Bytes::from_static(b"V")));
}

/// A waiter whose holder fails (unlocks without a value) stops waiting at once.
pub async fn waiter_is_released_by_a_failed_owner<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let lock = acquire(&*store, "k", LONG).await;
    let waiter = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.wait_computed("k", Duration::from_secs(30)).await })
    };
    tokio::task::yield_now().await;
    store.unlock_computed("k", lock).await.expect("unlock");
    let started = Instant::now();
    let woken = waiter.await.expect("the waiter task").expect("wait_computed");
    assert_eq!(woken, LockWait::Released);
    assert!(started.elapsed() < Duration::from_secs(20), "woken, not timed out");
}

/// A wait lasts at most its bound.
pub async fn wait_ends_at_its_bound<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    acquire(&*store, "k", LONG).await;
    let waited = store
        .wait_computed("k", Duration::from_millis(50))
        .await
        .expect("wait_computed");
    assert_eq!(waited, LockWait::TimedOut);
}

/// Nothing to wait for: the value is there, or nobody holds the lock.
pub async fn wait_answers_at_once_without_a_lock<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let bound = Duration::from_secs(30);
    assert_eq!(store.wait_computed("k", bound).await.expect("wait"), LockWait::Released);
    let s = stamp(&*store, "k").await;
    assert!(
        store
            .put_computed("k", &computed("V", &[], s, None))
            .await
            .expect("put")
    );
    acquire(&*store, "k", LONG).await;
    assert_eq!(
        store.wait_computed("k", bound).await.expect("wait"),
        LockWait::Value(Bytes::from_static(b"V"))
    );
}
