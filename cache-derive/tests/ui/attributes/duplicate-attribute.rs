use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "projects")]
#[cache(entity = "things")]
struct Project {
    #[cache(id)]
    id: RecordId,
    #[sortable]
    #[sortable]
    points: i64,
    #[indexed]
    #[indexed(normalize = "lowercase")]
    slug: String,
    #[cache(source = "A", source = "B")]
    name: String,
}

fn main() {}
