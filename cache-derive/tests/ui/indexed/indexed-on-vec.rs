use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "projects")]
struct Project {
    #[cache(id)]
    id: RecordId,
    #[indexed]
    tags: Vec<String>,
    #[indexed]
    scores: [u8; 4],
}

fn main() {}
