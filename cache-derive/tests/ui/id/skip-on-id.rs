use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "projects")]
struct Project {
    #[cache(id, skip)]
    #[indexed]
    id: RecordId,
    name: String,
}

fn main() {}
