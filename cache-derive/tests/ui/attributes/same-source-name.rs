use cache_core::{Cacheable, Link, RecordId};

#[derive(Cacheable)]
#[cache(entity = "projects", rename_all = "camelCase")]
struct Project {
    #[cache(id)]
    id: RecordId,
    #[cache(source = "Name")]
    name: String,
    #[cache(source = "Name")]
    title: String,
    owner_id: String,
    owner: Link<Project>,
}

fn main() {}
