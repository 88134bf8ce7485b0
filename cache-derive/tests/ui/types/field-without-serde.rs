use cache_core::{Cacheable, RecordId};

#[derive(serde::Serialize)]
struct Address {
    city: String,
}

struct Handle;

#[derive(Cacheable)]
#[cache(entity = "users")]
struct User {
    #[cache(id)]
    id: RecordId,
    address: Address,
    #[cache(skip)]
    handle: Handle,
}

fn main() {}
