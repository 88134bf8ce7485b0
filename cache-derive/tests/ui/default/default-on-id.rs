use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "votes")]
struct Vote {
    #[cache(id, default)]
    id: RecordId,
    points: i64,
}

fn main() {}
