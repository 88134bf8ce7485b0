//! `#[cache(crate = "...")]`: a crate re-exporting cache_core under another path.
mod reexport {
    pub use cache_core as cache;
}

use reexport::cache::{CacheView, Cacheable, IndexValue, RecordId};

#[derive(Cacheable)]
#[cache(entity = "notes", crate = "reexport::cache")]
struct Note {
    #[cache(id)]
    id: RecordId,
    #[indexed]
    kind: Kind,
    #[sortable]
    stars: u32,
}

#[derive(IndexValue, serde::Serialize, serde::Deserialize)]
#[cache(crate = "reexport::cache")]
enum Kind {
    Idea,
}

#[derive(CacheView)]
#[cache(view_of = Note, crate = "reexport::cache")]
struct NoteId {
    id: RecordId,
}

fn main() {
    let note = Note {
        id: RecordId::new("n1").unwrap(),
        kind: Kind::Idea,
        stars: 3,
    };
    assert_eq!(note.index_entries().tag("kind"), Some("Idea"));
    let _ = Note::by_kind(&Kind::Idea).asc(NoteSort::Stars);
    let _: NoteId = CacheView::from_model(note);
}
