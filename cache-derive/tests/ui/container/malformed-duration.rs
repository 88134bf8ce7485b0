use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "projects", ttl = "8 hours", tombstone_ttl = "0s")]
struct Project {
    #[cache(id)]
    id: RecordId,
}

fn main() {}
