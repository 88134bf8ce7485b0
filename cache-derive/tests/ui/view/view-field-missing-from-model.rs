use cache_core::{CacheView, Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "events")]
struct PrivateEvent {
    #[cache(id)]
    id: RecordId,
    name: String,
}

#[derive(CacheView)]
#[cache(view_of = PrivateEvent)]
struct Event {
    id: RecordId,
    name: String,
    venue: String,
}

fn main() {}
