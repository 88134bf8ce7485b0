use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "projects")]
struct Project {
    #[cache(id)]
    id: RecordId,
    #[cache(version)]
    etag: String,
    #[cache(version)]
    revision: u64,
}

fn main() {}
