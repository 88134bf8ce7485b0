//! The guide's links: every relative link in `docs/src` names a file that exists, and every
//! `#anchor` a heading of that file (as mdBook names headings). `mdbook build docs` in CI
//! builds it; this catches what it does not.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

fn guide() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src")
}

/// A heading's anchor as mdBook writes it: lower case, spaces as `-`, other punctuation gone.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut fenced = false;
    markdown
        .lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
            }
            !fenced
        })
        .filter_map(|line| line.strip_prefix('#'))
        .map(|rest| anchor(rest.trim_start_matches('#')))
        .collect()
}

/// The targets of the inline links `[text](target)` outside code.
fn links(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_and_anchor_exists() {
    let root = guide();
    let mut broken = Vec::new();
    let mut checked = 0;
    for entry in fs::read_dir(&root).expect("docs/src") {
        let path = entry.expect("an entry").path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("markdown");
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let linked = if file.is_empty() {
                path.clone()
            } else {
                path.parent().expect("a folder").join(file)
            };
            if !linked.exists() {
                broken.push(format!("{}: {target} (no such file)", path.display()));
                continue;
            }
            if !fragment.is_empty() && linked.extension().is_some_and(|e| e == "md") {
                let headings = anchors(&fs::read_to_string(&linked).expect("markdown"));
                if !headings.contains(fragment) {
                    broken.push(format!("{}: {target} (no heading #{fragment})", path.display()));
                }
            }
        }
    }
    assert!(checked > 10, "the guide has links to check ({checked})");
    assert!(broken.is_empty(), "broken links in the guide:\n{}", broken.join("\n"));
}

#[test]
fn anchors_are_named_as_mdbook_names_them() {
    assert_eq!(
        anchor("Deletes are final: the order of changes"),
        "deletes-are-final-the-order-of-changes"
    );
    assert_eq!(anchor("`Cache::get` hit"), "cacheget-hit");
    assert_eq!(links("see [a](b.md#c) and [d](https://e)"), ["b.md#c", "https://e"]);
}
