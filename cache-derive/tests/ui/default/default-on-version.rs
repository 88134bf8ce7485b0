use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "votes")]
struct Vote {
    #[cache(id)]
    id: RecordId,
    #[cache(version, default)]
    revision: u64,
}

fn main() {}
