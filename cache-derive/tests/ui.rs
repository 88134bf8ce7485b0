//! The compile-error suite: `tests/ui/<topic>/*.rs` must fail to compile with the error in
//! the `.stderr` next to each, `tests/ui/pass/*.rs` must compile and run.
//!
//! To update the expected output after changing a message: `TRYBUILD=overwrite cargo test -p
//! cache-derive --test ui`, then read every changed `.stderr`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    let mut topics: Vec<_> = std::fs::read_dir("tests/ui")
        .expect("tests/ui exists")
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_dir() && entry.file_name() != "pass")
        .map(|entry| entry.path())
        .collect();
    topics.sort();
    for topic in topics {
        cases.compile_fail(topic.join("*.rs"));
    }
}
