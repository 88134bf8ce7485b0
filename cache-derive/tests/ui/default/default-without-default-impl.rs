use cache_core::{Cacheable, RecordId};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Money {
    cents: i64,
}

#[derive(Cacheable)]
#[cache(entity = "votes", default)]
struct Vote {
    #[cache(id)]
    id: RecordId,
    price: Money,
}

fn main() {}
