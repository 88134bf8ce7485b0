use cache_core::{Cacheable, Links, RecordId};

#[derive(Cacheable)]
#[cache(entity = "events")]
struct Event {
    #[cache(id)]
    id: RecordId,
    sponsors: Option<Links<Event>>,
}

fn main() {}
