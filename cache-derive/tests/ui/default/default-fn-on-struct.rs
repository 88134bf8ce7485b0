use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "votes", default = "Vote::empty")]
struct Vote {
    #[cache(id)]
    id: RecordId,
    points: i64,
}

fn main() {}
