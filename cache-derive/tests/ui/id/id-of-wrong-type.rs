use cache_core::Cacheable;

#[derive(Cacheable)]
#[cache(entity = "projects")]
struct Project {
    #[cache(id)]
    id: String,
    name: String,
}

#[derive(Cacheable)]
#[cache(entity = "events")]
struct Event {
    #[cache(id)]
    id: i64,
}

fn main() {}
