use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "ids")]
struct Id(RecordId);

#[derive(Cacheable)]
#[cache(entity = "nothing")]
struct Nothing;

fn main() {}
