//! Flush patterns: which of the namespace's keys a [`Store::flush`](cache_core::store::Store::flush)
//! pattern removes.
//!
//! Patterns match *logical* keys, the same on every store (see `Store::flush`): `{entity}:r:{id}`
//! (a record), `{entity}:tomb:{id}` (a tombstone), `v:{key}` (a value) and here also
//! `tag:{tag}` (the value keys recorded under a tag). A record's physical key,
//! `{ns}:{projects}:1a2b3c4d:r:recP1` or `{ns}:{projects.2/4}:1a2b3c4d:r:recP1`, has a hash tag
//! and a fingerprint the logical key lacks, and holds either the record or its tombstone (see
//! `entity.lua`), so its logical key is `projects:r:recP1` or `projects:tomb:recP1` by what it
//! holds. So a pattern is not a `SCAN MATCH` pattern as it is: [`FlushPlan`] turns it into one
//! `SCAN MATCH` pattern that finds every physical key whose logical key can match (and maybe
//! more), and each key found is then matched exactly, as the in-memory store matches, with
//! [`glob_match`]; a record key whose two logical keys the pattern tells apart is decided by
//! what it holds ([`Decision::ByContent`]).
//!
//! The other keys of an entity bucket (its meta hash, id and sort zsets, tag sets, markers,
//! counters, leases) have no logical key. Removing a record drops the completeness markers of
//! its bucket (its `epoch` goes, as an evicted one would), so that no query is answered complete
//! from what is left; the record's index entries stay until it is written again or a fill
//! forgets them, as those of an expired record do. A pattern that matches every logical key of
//! an entity (`projects:*`) removes its buckets whole.

use cache_core::{
    keys::{glob_match, validate_pattern},
    store::StoreError,
};

/// Which keys a flush removes; see the module docs.
#[derive(Debug)]
pub(crate) struct FlushPlan {
    /// The logical pattern; `None` for everything in the namespace.
    pattern: Option<String>,
    /// The `SCAN MATCH` pattern: every key a flush removes matches it.
    scan: String,
    /// `X` of a pattern `X:*`: every logical key of an entity whose name matches `X` matches the
    /// pattern, so the entity's buckets go whole.
    whole_entity: Option<String>,
    /// The namespace and its `:`.
    prefix: String,
}

/// What a flush does with one key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision<'a> {
    Keep,
    Remove {
        /// Whether the key has a logical key (a record, tombstone, value or tag set): what the
        /// flush counts.
        counted: bool,
        /// For a record, the prefix of its bucket, whose markers must go with it.
        bucket: Option<&'a str>,
    },
    /// A record key, removed (and counted) by what it holds: a record when `record` (then its
    /// bucket's markers go with it), a tombstone when `tombstone`.
    ByContent {
        record: bool,
        tombstone: bool,
        /// The prefix of its bucket.
        bucket: &'a str,
    },
}

impl FlushPlan {
    /// Plans a flush of `namespace`. Refuses the patterns every store refuses
    /// ([`validate_pattern`]); nothing a pattern holds can reach outside the namespace, which
    /// prefixes every `SCAN MATCH` pattern as a literal (it has no glob syntax).
    pub(crate) fn new(namespace: &str, pattern: Option<&str>) -> Result<Self, StoreError> {
        let prefix = format!("{namespace}:");
        let Some(pattern) = pattern.filter(|p| !p.chars().all(|c| c == '*')) else {
            if let Some(p) = pattern {
                validate_pattern(p)?;
            }
            return Ok(Self {
                pattern: None,
                scan: format!("{prefix}*"),
                whole_entity: None,
                prefix,
            });
        };
        validate_pattern(pattern)?;
        let elements = elements(pattern);
        let literal = |e: &Element<'_>| e.literal;
        let scan = match elements.iter().position(|e| e.literal == Some(':')) {
            // `ENTITY:REST`, the entity spelled out.
            Some(colon) if elements[..colon].iter().all(|e| literal(e).is_some()) => {
                let entity: String = elements[..colon].iter().filter_map(literal).collect();
                if entity == "v" || entity == "tag" {
                    // Values and tag sets: the physical key is the namespace and the logical one.
                    format!("{prefix}{}", widened(&elements))
                } else {
                    // `{projects}:<fp>:REST` and `{projects.2/4}:<fp>:REST`, in one pass.
                    let rest = bucket_rest(&elements[colon + 1..]);
                    format!("{prefix}{{{}[.}}]*:{rest}", escape(&entity))
                }
            }
            // A glob in the first segment: the literal text before it starts the entity's name,
            // unless it may start `v:` or `tag:` too.
            _ => {
                let lead: String = elements.iter().map_while(literal).collect();
                if lead.is_empty() || "v".starts_with(&lead) || "tag".starts_with(&lead) {
                    format!("{prefix}*")
                } else {
                    format!("{prefix}{{{}*", escape(&lead))
                }
            }
        };
        // `X:*`: the `:` a literal, what follows only stars.
        let whole_entity = elements
            .iter()
            .rposition(|e| e.raw != "*")
            .filter(|&at| elements[at].literal == Some(':') && at + 1 < elements.len())
            .map(|at| pattern[..elements[at].start].to_owned());
        Ok(Self {
            pattern: Some(pattern.to_owned()),
            scan,
            whole_entity,
            prefix,
        })
    }

    /// The `SCAN MATCH` pattern that finds every key the flush may remove.
    pub(crate) fn scan_pattern(&self) -> &str {
        &self.scan
    }

    /// Whether the flush removes `key` (a key `SCAN` found under [`FlushPlan::scan_pattern`]).
    pub(crate) fn decide<'k>(&self, key: &'k str) -> Decision<'k> {
        let Some(rest) = key.strip_prefix(&self.prefix) else {
            return Decision::Keep;
        };
        let parsed = Physical::parse(rest);
        let logical = match &parsed {
            Physical::Bucket {
                entity,
                suffix,
                prefix_len,
            } => {
                let bucket = &key[..self.prefix.len() + prefix_len];
                let id = suffix.strip_prefix("r:");
                let whole = match (&self.pattern, &self.whole_entity) {
                    (None, _) => true,
                    (Some(_), Some(glob)) => glob_match(glob, entity),
                    (Some(_), None) => false,
                };
                if whole {
                    return Decision::Remove {
                        counted: id.is_some(),
                        bucket: id.map(|_| bucket),
                    };
                }
                let (Some(pattern), Some(id)) = (&self.pattern, id) else {
                    return Decision::Keep;
                };
                // Its logical key, as a record (`r`) or as a tombstone (`tomb`).
                let matches = |kind: &str| {
                    let mut logical = String::with_capacity(entity.len() + kind.len() + 2 + id.len());
                    logical.push_str(entity);
                    logical.push(':');
                    logical.push_str(kind);
                    logical.push(':');
                    logical.push_str(id);
                    glob_match(pattern, &logical)
                };
                let (record, tombstone) = (matches("r"), matches("tomb"));
                return if record || tombstone {
                    Decision::ByContent {
                        record,
                        tombstone,
                        bucket,
                    }
                } else {
                    Decision::Keep
                };
            }
            Physical::Value | Physical::TagSet => Some(rest),
            Physical::Internal => None,
        };
        match (&self.pattern, logical) {
            (None, logical) => Decision::Remove {
                counted: logical.is_some(),
                bucket: None,
            },
            (Some(pattern), Some(logical)) if glob_match(pattern, logical) => Decision::Remove {
                counted: true,
                bucket: None,
            },
            _ => Decision::Keep,
        }
    }
}

/// A key of the namespace (without it), by what it is.
enum Physical<'a> {
    /// A key of an entity bucket: `{projects}:<fp>:<suffix>`, `{projects.2/4}:<fp>:<suffix>`.
    Bucket {
        /// The entity (key-encoded, as in the key).
        entity: &'a str,
        /// What follows the fingerprint: `r:recP1`, `m`, `i:event:recE1`, ...
        suffix: &'a str,
        /// The length of the bucket's prefix (`{projects}:<fp>`).
        prefix_len: usize,
    },
    /// `v:<key>`.
    Value,
    /// `tag:<tag>`.
    TagSet,
    /// Locks, purge marks.
    Internal,
}

impl<'a> Physical<'a> {
    fn parse(rest: &'a str) -> Self {
        if rest.starts_with("v:") {
            return Self::Value;
        }
        if rest.starts_with("tag:") {
            return Self::TagSet;
        }
        let bucket = || {
            let (tag, after) = rest.strip_prefix('{')?.split_once('}')?;
            let fingerprint = after.strip_prefix(':')?.get(..8)?;
            if !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let suffix = after.get(9..)?.strip_prefix(':')?;
            Some(Self::Bucket {
                entity: entity_of(tag),
                suffix,
                prefix_len: rest.len() - suffix.len() - 1,
            })
        };
        bucket().unwrap_or(Self::Internal)
    }
}

/// The entity of a hash tag: `projects` of `projects` and of `projects.2/4` (bucket 2 of 4).
///
/// An entity named like a bucket (`a.1/2`) reads as another entity's bucket; entity names are
/// identifiers in practice, and the layout has the same ambiguity (see `KeyLayout`).
fn entity_of(tag: &str) -> &str {
    // Digits only: `parse` alone would take a sign.
    let number = |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<u32>().ok())?;
    let split = || {
        let (entity, bucket) = tag.rsplit_once('.')?;
        let (bucket, count) = bucket.split_once('/')?;
        (number(bucket)? < number(count)?).then_some(entity)
    };
    split().unwrap_or(tag)
}

/// One element of a glob: a character (plain or escaped), `?`, `*` or a `[...]` class.
struct Element<'a> {
    /// The character it matches, when it is a literal.
    literal: Option<char>,
    raw: &'a str,
    start: usize,
}

/// What follows `{entity}:` in a pattern (its elements), as a `SCAN MATCH` pattern of what
/// follows the fingerprint in the bucket keys whose logical keys it can match. A tombstone's
/// logical key is `tomb:{id}` there, its physical key the record's, `r:{id}`.
fn bucket_rest(rest: &[Element<'_>]) -> String {
    const TOMB: &str = "tomb:";
    let lead: String = rest.iter().map_while(|e| e.literal).collect();
    if lead.starts_with(TOMB) {
        return format!("r:{}", widened(&rest[TOMB.len()..]));
    }
    if TOMB.starts_with(&lead) && lead.chars().count() < rest.len() {
        // `t*`, `*:rec1`: records and tombstones alike.
        return "*".to_owned();
    }
    widened(rest)
}

/// The elements as a `SCAN MATCH` pattern that finds at least every key they match: Redis
/// matches bytes where [`glob_match`] matches characters, so a `?` or a class (which would
/// miss a character of several bytes) becomes `*`; every key found is then decided exactly.
fn widened(elements: &[Element<'_>]) -> String {
    elements
        .iter()
        .map(|e| {
            if e.literal.is_some() || e.raw == "*" {
                e.raw
            } else {
                "*"
            }
        })
        .collect()
}

/// The elements of a valid pattern, read as [`glob_match`] and Redis read them.
fn elements(pattern: &str) -> Vec<Element<'_>> {
    let chars: Vec<(usize, char)> = pattern.char_indices().collect();
    let at = |i: usize| chars.get(i).map_or(pattern.len(), |&(byte, _)| byte);
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (literal, next) = match chars[i].1 {
            '\\' if i + 1 < chars.len() => (Some(chars[i + 1].1), i + 2),
            '*' | '?' => (None, i + 1),
            '[' => {
                let mut j = i + 1;
                if chars.get(j).is_some_and(|&(_, c)| c == '^') {
                    j += 1;
                }
                loop {
                    match chars.get(j).map(|&(_, c)| c) {
                        None => break,
                        Some(']') => {
                            j += 1;
                            break;
                        }
                        Some('\\') if j + 1 < chars.len() => j += 2,
                        Some(_) if j + 2 < chars.len() && chars[j + 1].1 == '-' => j += 3,
                        Some(_) => j += 1,
                    }
                }
                (None, j)
            }
            c => (Some(c), i + 1),
        };
        out.push(Element {
            literal,
            raw: &pattern[at(i)..at(next)],
            start: at(i),
        });
        i = next;
    }
    out
}

/// `text` as a glob matching exactly it.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "1a2b3c4d";

    fn plan(pattern: &str) -> FlushPlan {
        FlushPlan::new("mc", Some(pattern)).unwrap()
    }

    /// Whether `plan` removes `key`, holding a tombstone when `tombstone` (a record key).
    fn removes_holding(plan: &FlushPlan, key: &str, tombstone: bool) -> bool {
        let decision = plan.decide(key);
        assert!(
            glob_match(plan.scan_pattern(), key) || decision == Decision::Keep,
            "{key} is removed but not scanned by {:?}",
            plan.scan_pattern()
        );
        match decision {
            Decision::Keep => false,
            Decision::Remove { .. } => true,
            Decision::ByContent {
                record,
                tombstone: tomb,
                ..
            } => {
                if tombstone {
                    tomb
                } else {
                    record
                }
            }
        }
    }

    fn removes(plan: &FlushPlan, key: &str) -> bool {
        removes_holding(plan, key, false)
    }

    #[test]
    fn scan_patterns_cover_every_layout() {
        assert_eq!(plan("projects:*").scan_pattern(), "mc:{projects[.}]*:*");
        assert_eq!(plan("projects:r:rec\\1").scan_pattern(), "mc:{projects[.}]*:r:rec\\1");
        assert_eq!(plan("v:http:*").scan_pattern(), "mc:v:http:*");
        // Redis matches bytes: `?` and classes would miss a character of several bytes.
        assert_eq!(plan("projects:r:?").scan_pattern(), "mc:{projects[.}]*:r:*");
        assert_eq!(plan("v:[ab]x").scan_pattern(), "mc:v:*x");
        assert_eq!(plan("tag:a*").scan_pattern(), "mc:tag:a*");
        assert_eq!(plan("proj*:r:*").scan_pattern(), "mc:{proj*");
        assert_eq!(plan("a\\*b?:*").scan_pattern(), "mc:{a\\*b*");
        // A tombstone lives in its record's key.
        assert_eq!(
            plan("projects:tomb:rec\\1").scan_pattern(),
            "mc:{projects[.}]*:r:rec\\1"
        );
        assert_eq!(plan("projects:tomb:?").scan_pattern(), "mc:{projects[.}]*:r:*");
        for both in ["projects:t*", "projects:*1", "projects:?:rec1"] {
            assert_eq!(plan(both).scan_pattern(), "mc:{projects[.}]*:*", "{both}");
        }
        for everything in ["*:tomb:*", "?rojects:*", "t*", "v*"] {
            assert_eq!(plan(everything).scan_pattern(), "mc:*", "{everything}");
        }
        assert_eq!(FlushPlan::new("mc", None).unwrap().scan_pattern(), "mc:*");
    }

    #[test]
    fn keys_are_matched_by_their_logical_key() {
        let record = format!("mc:{{projects}}:{FP}:r:rec1");
        let bucketed = format!("mc:{{projects.2/4}}:{FP}:r:rec1");
        let meta = format!("mc:{{projects}}:{FP}:m");
        for pattern in [
            "projects:r:rec1",
            "projects:r:*",
            "*:r:rec1",
            "*r:rec1",
            "p?ojects:[r]:rec\\1",
        ] {
            let plan = plan(pattern);
            assert!(removes(&plan, &record), "{pattern}");
            assert!(removes(&plan, &bucketed), "{pattern}");
            assert!(!removes_holding(&plan, &bucketed, true), "{pattern}: a tombstone");
            assert!(!removes(&plan, &meta), "{pattern}");
        }
        for pattern in ["projects:tomb:rec1", "*:tomb:*", "projects:t*", "*b:rec1"] {
            let plan = plan(pattern);
            assert!(removes_holding(&plan, &record, true), "{pattern}");
            assert!(removes_holding(&plan, &bucketed, true), "{pattern}");
            assert!(!removes(&plan, &bucketed), "{pattern}: a record");
            assert!(!removes(&plan, &meta), "{pattern}");
        }
        for either in ["*rec1", "projects:?*:rec1", "*:*:*"] {
            assert!(removes(&plan(either), &record), "{either}");
            assert!(removes_holding(&plan(either), &record, true), "{either}");
        }
        assert_eq!(
            plan("projects:r:*").decide(&bucketed),
            Decision::ByContent {
                record: true,
                tombstone: false,
                bucket: &bucketed[..bucketed.len() - ":r:rec1".len()],
            }
        );
        let whole = plan("projects:*");
        for key in [&record, &bucketed, &meta] {
            assert!(removes(&whole, key), "{key}");
        }
        assert_eq!(
            whole.decide(&bucketed),
            Decision::Remove {
                counted: true,
                bucket: Some(&bucketed[..bucketed.len() - ":r:rec1".len()]),
            },
            "a record or a tombstone: counted either way"
        );
        assert_eq!(
            whole.decide(&meta),
            Decision::Remove {
                counted: false,
                bucket: None
            }
        );
        for pattern in ["{projects}:*", "projects.2/4:*", "project:*", "*:m", "1a2b3c4d:*"] {
            for key in [&record, &bucketed, &meta] {
                assert!(!removes(&plan(pattern), key), "{pattern} {key}");
                assert!(!removes_holding(&plan(pattern), key, true), "{pattern} {key}");
            }
        }
        assert!(removes(&plan("*:*"), &meta), "every entity whole");
    }

    #[test]
    fn values_tag_sets_and_internal_keys() {
        let value = "mc:v:http:events:recE1";
        let tag = "mc:tag:projects%3Fevent%3DrecE1";
        let lock = "mc:lock:{mc:v:http:events:recE1}";
        assert!(removes(&plan("v:http:*"), value));
        assert!(removes(&plan("*:events:*"), value));
        assert!(!removes(&plan("v:http:*"), lock));
        assert!(removes(&plan("tag:*"), tag));
        assert!(!removes(&plan("v:*"), tag));
        let everything = FlushPlan::new("mc", Some("**")).unwrap();
        assert_eq!(
            everything.decide(lock),
            Decision::Remove {
                counted: false,
                bucket: None
            }
        );
        assert!(matches!(
            everything.decide(value),
            Decision::Remove { counted: true, .. }
        ));
        assert_eq!(everything.decide("mcx:v:a"), Decision::Keep);
    }

    #[test]
    fn patterns_every_store_refuses_are_refused() {
        for bad in ["", "a\\", "[a", "a]", "a b", "a\n"] {
            assert!(FlushPlan::new("mc", Some(bad)).is_err(), "{bad:?}");
        }
        for good in ["\\*", "v:[\\]]*", "projects:r:\\p1", "{projects}*"] {
            assert!(FlushPlan::new("mc", Some(good)).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn bucket_tags_name_their_entity() {
        assert_eq!(entity_of("projects"), "projects");
        assert_eq!(entity_of("projects.2/4"), "projects");
        assert_eq!(entity_of("projects.4/4"), "projects.4/4");
        assert_eq!(entity_of("a.b.1/2"), "a.b");
        assert_eq!(entity_of("a.+1/2"), "a.+1/2");
    }
}
