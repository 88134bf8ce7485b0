use cache_core::{Cacheable, Link, Links, RecordId};

struct Venue;

#[derive(Cacheable)]
#[cache(entity = "events")]
struct Event {
    #[cache(id)]
    id: RecordId,
    venue: Link<Venue>,
    sponsors: Links<Venue>,
}

fn main() {}
