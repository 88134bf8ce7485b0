use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "votes")]
struct Vote {
    #[cache(id)]
    id: RecordId,
    #[cache(default = "one")]
    points: i64,
}

fn one() -> String {
    String::from("1")
}

fn main() {}
