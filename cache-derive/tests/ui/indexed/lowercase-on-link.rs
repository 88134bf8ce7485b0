use cache_core::{Cacheable, Link, RecordId};

#[derive(Cacheable)]
#[cache(entity = "users")]
struct User {
    #[cache(id)]
    id: RecordId,
    #[indexed(normalize = "lowercase")]
    manager: Link<User>,
    #[indexed(normalize = "upper")]
    email: String,
    #[indexed(normalise = "lowercase")]
    login: String,
}

fn main() {}
