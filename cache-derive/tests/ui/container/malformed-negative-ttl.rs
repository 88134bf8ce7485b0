use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "projects", negative_ttl = "soon")]
struct Project {
    #[cache(id)]
    id: RecordId,
}

fn main() {}
