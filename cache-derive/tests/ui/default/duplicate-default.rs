use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "votes", default)]
#[cache(default)]
struct Vote {
    #[cache(id)]
    id: RecordId,
    #[cache(default, default = "zero")]
    points: i64,
    #[cache(default)]
    #[cache(default)]
    comment: String,
}

fn zero() -> i64 {
    0
}

fn main() {}
