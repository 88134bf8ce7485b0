use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "users")]
struct User {
    #[cache(id)]
    id: RecordId,
    #[indexed]
    #[cache(skip)]
    email: String,
    #[sortable]
    #[cache(skip)]
    karma: i64,
}

fn main() {}
