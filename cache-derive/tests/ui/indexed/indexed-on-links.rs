use cache_core::{Cacheable, Links, RecordId};

#[derive(Cacheable)]
#[cache(entity = "users")]
struct User {
    #[cache(id)]
    id: RecordId,
}

#[derive(Cacheable)]
#[cache(entity = "projects")]
struct Project {
    #[cache(id)]
    id: RecordId,
    #[indexed]
    collaborators: Links<User>,
}

fn main() {}
