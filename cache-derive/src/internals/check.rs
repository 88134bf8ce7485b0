//! Rules that involve several attributes or several fields: one id, one version, no two
//! fields with the same source name, attributes that make no sense together or on a type.

use std::collections::HashMap;

use quote::ToTokens;

use super::{
    Ctxt,
    ast::{Container, Field},
    attr::{FieldDefault, Normalize},
    ty::{self, Shape},
};

/// Checks a parsed container, reporting every broken rule.
pub(crate) fn check(cx: &Ctxt, cont: &Container<'_>) {
    check_id(cx, cont);
    check_version(cx, cont);
    for field in &cont.fields {
        check_skip(cx, field);
        check_default(cx, field);
        check_types(cx, field);
    }
    check_source_names(cx, cont);
}

fn type_text(field: &Field<'_>) -> String {
    ty::display(field.ty)
}

fn check_id(cx: &Ctxt, cont: &Container<'_>) {
    let mut ids = cont.fields.iter().filter(|f| f.attrs.id.is_some());
    let Some(id) = ids.next() else {
        let hint = match cont.fields.iter().find(|f| f.name == "id") {
            Some(_) => "add `#[cache(id)]` to the field `id`".to_owned(),
            None => "add a field `#[cache(id)] id: RecordId`".to_owned(),
        };
        cx.error_spanned_by(cont.ident, format!("`#[derive(Cacheable)]` needs an id field: {hint}"));
        return;
    };
    for other in ids {
        if let Some(attr) = &other.attrs.id {
            cx.error_spanned_by(
                &attr.tokens,
                format!(
                    "duplicate id field: `{}` is already the `#[cache(id)]` field; a record has one id",
                    id.name
                ),
            );
        }
    }
    if !ty::is_record_id(id.ty) {
        cx.error_spanned_by(
            id.ty,
            format!(
                "the `#[cache(id)]` field must be a `cache_core::RecordId`, not `{}`: ids are validated so that they can never break a store key",
                type_text(id)
            ),
        );
    }
    let attrs = &id.attrs;
    let conflicts = [
        (
            attrs.skip.as_ref().map(|s| &s.tokens),
            "`#[cache(skip)]` cannot be on the id field: every record is stored with its id",
        ),
        (
            attrs.indexed.as_ref().map(|s| &s.tokens),
            "the id field cannot be `#[indexed]`: records are found by id without an index",
        ),
        (
            attrs.sortable.as_ref().map(|s| &s.tokens),
            "the id field cannot be `#[sortable]`: results are already ordered by id within equal sort values",
        ),
        (
            attrs.version.as_ref().map(|s| &s.tokens),
            "the id field cannot be the `#[cache(version)]`: use a number or a timestamp that grows with each change",
        ),
        (
            attrs.source.as_ref().map(|s| &s.tokens),
            "`#[cache(source)]` cannot be on the id field: the id is the record's own id at the source, not one of its fields",
        ),
        (
            attrs.default.as_ref().map(|s| &s.tokens),
            "`#[cache(default)]` cannot be on the id field: every record has its id, a record without one is not a record",
        ),
    ];
    for (tokens, message) in conflicts {
        if let Some(tokens) = tokens {
            cx.error_spanned_by(tokens, message);
        }
    }
}

fn check_version(cx: &Ctxt, cont: &Container<'_>) {
    let mut versions = cont.fields.iter().filter(|f| f.attrs.version.is_some());
    let Some(first) = versions.next() else {
        return;
    };
    for other in versions {
        if let Some(attr) = &other.attrs.version {
            cx.error_spanned_by(
                &attr.tokens,
                format!(
                    "duplicate `#[cache(version)]`: `{}` is already the version field",
                    first.name
                ),
            );
        }
    }
}

fn check_skip(cx: &Ctxt, field: &Field<'_>) {
    let Some(skip) = &field.attrs.skip else {
        return;
    };
    if field.attrs.id.is_some() {
        return; // Reported by `check_id`.
    }
    let conflicts = [
        (field.attrs.indexed.is_some(), "#[indexed]", "indexed"),
        (field.attrs.sortable.is_some(), "#[sortable]", "sorted by"),
        (field.attrs.version.is_some(), "#[cache(version)]", "the version"),
    ];
    for (set, attr, what) in conflicts {
        if set {
            cx.error_spanned_by(
                &skip.tokens,
                format!("`#[cache(skip)]` cannot be combined with `{attr}`: a skipped field is never stored, so it cannot be {what}"),
            );
        }
    }
}

/// `#[cache(default)]` on a field: only where a default value means what the source meant.
fn check_default(cx: &Ctxt, field: &Field<'_>) {
    let Some(default) = &field.attrs.default else {
        return;
    };
    if field.attrs.id.is_some() {
        return; // Reported by `check_id`.
    }
    let written = match default.value {
        FieldDefault::Trait => "`#[cache(default)]`",
        FieldDefault::Path(_) => "`#[cache(default = \"...\")]`",
    };
    let message = if field.attrs.skip.is_some() {
        format!(
            "{written} cannot be combined with `#[cache(skip)]`: a skipped field is never read from the source, and is always `Default::default()`"
        )
    } else if field.attrs.version.is_some() {
        format!(
            "{written} cannot be on the `#[cache(version)]` field: a record of unknown version would be ordered as if it had the default one, and its changes could be refused as older; make the field an `Option`, so that an absent version is unknown (`None`), not invented"
        )
    } else if matches!(default.value, FieldDefault::Trait)
        && matches!(field.shape, Shape::Link { .. })
        && !field.optional
    {
        format!(
            "{written} cannot be on a `{}`: a link always names a record, and there is no default record; use `Option<Link<T>>`, which is `None` when the source has no link (or name a fallback record with `default = \"...\"`)",
            type_text(field)
        )
    } else if matches!(default.value, FieldDefault::Path(_)) && field.optional {
        format!(
            "{written} cannot be on an `Option` field (`{}`): `None` is written to the source as an empty cell, which would read back as the default; an absent `Option` is already `None`",
            type_text(field)
        )
    } else {
        return;
    };
    cx.error_spanned_by(&default.tokens, message);
}

fn check_types(cx: &Ctxt, field: &Field<'_>) {
    if ty::is_optional_links(field.ty) {
        cx.error_spanned_by(
            field.ty,
            format!(
                "`{}` is not supported: use `Links<T>`, which is empty when the source has no links",
                type_text(field)
            ),
        );
        return;
    }
    if let Some(indexed) = &field.attrs.indexed {
        if let Some(what) = ty::not_indexable(field.ty) {
            let hint = if what == "a multi-record link" {
                "; single links (`Link<T>`, `Option<Link<T>>`) are indexed automatically"
            } else {
                ""
            };
            cx.error_spanned_by(
                field.ty,
                format!(
                    "`#[indexed]` needs a scalar field: `{}` is {what}{hint}",
                    type_text(field)
                ),
            );
        } else if indexed.value == Normalize::Lowercase && matches!(field.shape, Shape::Link { .. }) {
            cx.error_spanned_by(
                &indexed.tokens,
                "`normalize = \"lowercase\"` does not apply to links: record ids are case-sensitive",
            );
        }
    }
    for (attr, set) in [
        ("#[sortable]", field.attrs.sortable.is_some()),
        ("#[cache(version)]", field.attrs.version.is_some()),
    ] {
        if !set {
            continue;
        }
        if let Some(what) = ty::not_sortable(field.ty) {
            cx.error_spanned_by(
                field.ty,
                format!(
                    "`{attr}` needs a numeric field: `{}` is {what}; use an integer, a float or a timestamp (`chrono::DateTime`, `time::OffsetDateTime`)",
                    type_text(field)
                ),
            );
        }
    }
}

fn check_source_names(cx: &Ctxt, cont: &Container<'_>) {
    let mut seen: HashMap<&str, &Field<'_>> = HashMap::new();
    for field in cont.fields.iter().filter(|f| f.attrs.id.is_none() && f.is_stored()) {
        if let Some(first) = seen.get(field.source_name.as_str()) {
            let tokens = match &field.attrs.source {
                Some(source) => source.tokens.clone(),
                None => field.ident.to_token_stream(),
            };
            cx.error_spanned_by(
                tokens,
                format!(
                    "fields `{}` and `{}` have the same source name \"{}\"; give one a `#[cache(source = \"...\")]`",
                    first.name, field.name, field.source_name
                ),
            );
        } else {
            seen.insert(&field.source_name, field);
        }
    }
}
