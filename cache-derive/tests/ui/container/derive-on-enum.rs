use cache_core::Cacheable;

#[derive(Cacheable)]
#[cache(entity = "statuses")]
enum Status {
    Draft,
    Published,
}

fn main() {}
