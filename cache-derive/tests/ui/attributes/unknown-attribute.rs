use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "projects", ttll = "8h")]
struct Project {
    #[cache(id)]
    id: RecordId,
    #[cache(indxed)]
    slug: String,
    #[cache(sortable)]
    points: i64,
    #[cache(entity = "x")]
    name: String,
    #[cache(sauce = "Name")]
    title: String,
}

fn main() {}
