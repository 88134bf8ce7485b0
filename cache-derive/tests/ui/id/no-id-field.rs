use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "projects")]
struct Project {
    id: RecordId,
    name: String,
}

#[derive(Cacheable)]
#[cache(entity = "events")]
struct Event {
    key: RecordId,
}

fn main() {}
