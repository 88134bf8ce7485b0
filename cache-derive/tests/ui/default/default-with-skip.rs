use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "votes")]
struct Vote {
    #[cache(id)]
    id: RecordId,
    #[cache(skip, default)]
    scratch: Option<String>,
    #[cache(skip, default = "fresh")]
    note: String,
}

fn fresh() -> String {
    String::from("fresh")
}

fn main() {}
