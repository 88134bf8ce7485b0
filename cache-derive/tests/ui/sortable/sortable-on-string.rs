use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "projects")]
struct Project {
    #[cache(id)]
    id: RecordId,
    #[sortable]
    field: String,
}

fn main() {}
