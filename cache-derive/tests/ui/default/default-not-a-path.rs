use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "votes")]
struct Vote {
    #[cache(id)]
    id: RecordId,
    #[cache(default = "zero()")]
    points: i64,
    #[cache(default = "")]
    weight: f64,
    #[cache(default = 0)]
    rank: u32,
}

fn zero() -> i64 {
    0
}

fn main() {}
