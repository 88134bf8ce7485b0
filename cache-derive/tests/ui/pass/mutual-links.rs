//! Two models linking to each other: schemas resolve lazily, through fn pointers.
use cache_core::{Cacheable, Link, Links, RecordId, schema::FieldKind};

#[derive(Cacheable)]
#[cache(entity = "teams")]
struct Team {
    #[cache(id)]
    id: RecordId,
    members: Links<Member>,
    captain: Option<Link<Member>>,
}

#[derive(Cacheable)]
#[cache(entity = "members")]
struct Member {
    #[cache(id)]
    id: RecordId,
    team: Link<Team>,
}

fn main() {
    let FieldKind::Link { target } = Member::schema().field("team").unwrap().kind else {
        panic!()
    };
    let FieldKind::Links { target: back } = target().field("members").unwrap().kind else {
        panic!()
    };
    assert_eq!(back().entity, "members");
    let _ = Team::by_captain;
    let _ = Member::by_team;
}
