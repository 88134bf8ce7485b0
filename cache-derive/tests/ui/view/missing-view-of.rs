use cache_core::{CacheView, RecordId};

#[derive(CacheView)]
#[cache(view = PrivateEvent)]
struct Event {
    id: RecordId,
}

fn main() {}
