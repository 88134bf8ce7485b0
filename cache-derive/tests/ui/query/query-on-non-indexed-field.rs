use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "projects")]
struct Project {
    #[cache(id)]
    id: RecordId,
    #[indexed]
    slug: String,
    name: String,
    #[sortable]
    points: i64,
}

fn main() {
    let _ = Project::by_slug("hovercraft");
    let _ = Project::by_name("Hovercraft");
    let _ = Project::by_slug("hovercraft").asc(ProjectSort::Name);
}
