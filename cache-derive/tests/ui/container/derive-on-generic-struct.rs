use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "boxes")]
struct Boxed<T> {
    #[cache(id)]
    id: RecordId,
    value: T,
}

fn main() {}
