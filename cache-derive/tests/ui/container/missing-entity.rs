use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(ttl = "1h", rename_all = "camelcase")]
struct ProjectTask {
    #[cache(id)]
    id: RecordId,
}

fn main() {}
