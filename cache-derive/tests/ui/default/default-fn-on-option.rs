use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "votes")]
struct Vote {
    #[cache(id)]
    id: RecordId,
    #[cache(default = "no_comment")]
    comment: Option<String>,
}

fn no_comment() -> Option<String> {
    Some(String::from("(none)"))
}

fn main() {}
