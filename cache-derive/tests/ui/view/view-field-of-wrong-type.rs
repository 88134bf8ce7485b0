use cache_core::{CacheView, Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "events")]
struct PrivateEvent {
    #[cache(id)]
    id: RecordId,
    name: String,
    capacity: u32,
}

#[derive(CacheView)]
#[cache(view_of = PrivateEvent)]
struct Event {
    id: RecordId,
    name: String,
    capacity: String,
}

fn main() {}
