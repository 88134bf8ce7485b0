use cache_core::{Cacheable, Link, RecordId};

#[derive(Cacheable)]
#[cache(entity = "votes")]
struct Vote {
    #[cache(id)]
    id: RecordId,
    #[cache(default)]
    project: Link<Project>,
}

#[derive(Cacheable)]
#[cache(entity = "projects")]
struct Project {
    #[cache(id)]
    id: RecordId,
}

fn main() {}
