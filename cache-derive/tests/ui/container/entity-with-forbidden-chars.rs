use cache_core::{Cacheable, RecordId};

#[derive(Cacheable)]
#[cache(entity = "app:projects")]
struct A {
    #[cache(id)]
    id: RecordId,
}

#[derive(Cacheable)]
#[cache(entity = "projects*")]
struct B {
    #[cache(id)]
    id: RecordId,
}

#[derive(Cacheable)]
#[cache(entity = "{projects}")]
struct C {
    #[cache(id)]
    id: RecordId,
}

#[derive(Cacheable)]
#[cache(entity = "my projects")]
struct D {
    #[cache(id)]
    id: RecordId,
}

#[derive(Cacheable)]
#[cache(entity = "")]
struct E {
    #[cache(id)]
    id: RecordId,
}

fn main() {}
