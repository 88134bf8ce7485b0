use cache_core::{Cacheable, RecordId};

#[derive(serde::Serialize, serde::Deserialize)]
struct Money {
    cents: i64,
}

#[derive(Cacheable)]
#[cache(entity = "projects")]
struct Project {
    #[cache(id)]
    id: RecordId,
    #[sortable]
    budget: Money,
}

fn main() {}
