use cache_core::{Cacheable, RecordId};

#[derive(serde::Serialize, serde::Deserialize)]
struct Address {
    city: String,
}

#[derive(Cacheable)]
#[cache(entity = "users")]
struct User {
    #[cache(id)]
    id: RecordId,
    #[indexed]
    address: Address,
}

fn main() {}
