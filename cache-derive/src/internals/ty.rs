//! What a field's type looks like, as far as it can be told from its tokens.
//!
//! A derive sees tokens, not types, so these are syntactic guesses: `Link<T>` is recognised by
//! the last segment of its path (`Link`, `cache_core::Link`), whatever it was imported as. The
//! trait bounds in the generated code (`IndexValue`, `SortKey`) catch what these miss.

use syn::{GenericArgument, PathArguments, Type};

/// How the cache treats a field, from its type.
pub(crate) enum Shape<'a> {
    /// `Link<T>` or, if `optional`, `Option<Link<T>>`.
    Link { target: &'a Type },
    /// `Links<T>`.
    Links { target: &'a Type },
    /// Anything else.
    Scalar,
}

/// Strips invisible groups (from `macro_rules!` fragments) and parentheses.
fn peel(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(g) => ty = &g.elem,
            Type::Paren(p) => ty = &p.elem,
            _ => return ty,
        }
    }
}

/// The last path segment's name and its generic arguments: `Link` and `<Event>` for
/// `cache_core::Link<Event>`. `None` for a type that is not a plain path.
fn last_segment(ty: &Type) -> Option<(String, Vec<&Type>)> {
    let Type::Path(path) = peel(ty) else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let segment = path.path.segments.last()?;
    let args = match &segment.arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .collect(),
        PathArguments::None | PathArguments::Parenthesized(_) => Vec::new(),
    };
    Some((segment.ident.to_string(), args))
}

/// `T` for `Name<T>` (one type argument), checking the name.
fn single_arg<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    match last_segment(ty) {
        Some((ident, args)) if ident == name && args.len() == 1 => Some(args[0]),
        _ => None,
    }
}

/// The `T` of `Option<T>`.
pub(crate) fn option_inner(ty: &Type) -> Option<&Type> {
    single_arg(ty, "Option")
}

/// Whether the type is `Option<Links<T>>`, which the cache does not support (an absent
/// `Links<T>` is already empty).
pub(crate) fn is_optional_links(ty: &Type) -> bool {
    option_inner(ty).is_some_and(|inner| single_arg(inner, "Links").is_some())
}

/// The shape of a field's type, and whether it is an `Option`.
pub(crate) fn shape(ty: &Type) -> (Shape<'_>, bool) {
    if let Some(target) = single_arg(ty, "Link") {
        return (Shape::Link { target }, false);
    }
    if let Some(target) = single_arg(ty, "Links") {
        return (Shape::Links { target }, false);
    }
    if let Some(inner) = option_inner(ty) {
        if let Some(target) = single_arg(inner, "Link") {
            return (Shape::Link { target }, true);
        }
        return (Shape::Scalar, true);
    }
    (Shape::Scalar, false)
}

/// Whether the type is (a path ending in) `RecordId`.
pub(crate) fn is_record_id(ty: &Type) -> bool {
    matches!(last_segment(ty), Some((ident, args)) if ident == "RecordId" && args.is_empty())
}

/// What an obviously unindexable or unsortable type is, for the error message: `a list`,
/// `a map`. Looks through one `Option`.
fn collection(ty: &Type) -> Option<&'static str> {
    let ty = option_inner(ty).unwrap_or(ty);
    match peel(ty) {
        Type::Array(_) | Type::Slice(_) => return Some("a list"),
        Type::Tuple(t) if !t.elems.is_empty() => return Some("a tuple"),
        Type::Reference(r) => return collection(&r.elem),
        _ => {}
    }
    let (ident, _) = last_segment(ty)?;
    match ident.as_str() {
        "Links" => Some("a multi-record link"),
        "Vec" | "VecDeque" | "LinkedList" | "SmallVec" | "ArrayVec" => Some("a list"),
        "HashSet" | "BTreeSet" | "IndexSet" => Some("a set"),
        "HashMap" | "BTreeMap" | "IndexMap" | "Map" => Some("a map"),
        _ => None,
    }
}

/// Why a type obviously cannot be `#[indexed]`, if it obviously cannot.
pub(crate) fn not_indexable(ty: &Type) -> Option<&'static str> {
    collection(ty)
}

/// Why a type obviously cannot be `#[sortable]` or a `#[cache(version)]`, if it obviously
/// cannot.
pub(crate) fn not_sortable(ty: &Type) -> Option<&'static str> {
    if let Some(what) = collection(ty) {
        return Some(what);
    }
    let ty = option_inner(ty).unwrap_or(ty);
    if let Type::Reference(r) = peel(ty) {
        return not_sortable(&r.elem);
    }
    let (ident, _) = last_segment(ty)?;
    match ident.as_str() {
        "String" | "str" | "Cow" | "Box" | "Arc" | "Rc" | "RecordId" => Some("text"),
        "bool" => Some("a boolean"),
        "Link" => Some("a link"),
        _ => None,
    }
}

/// The type as a user would write it: `chrono::DateTime<chrono::Utc>`, not
/// `chrono :: DateTime < chrono :: Utc >`. Part of the schema fingerprint, so it must be
/// deterministic (it is: it depends only on the tokens).
pub(crate) fn display(ty: &Type) -> String {
    let raw = quote::quote!(#ty).to_string();
    let mut out = String::with_capacity(raw.len());
    let chars: Vec<char> = raw.chars().collect();
    for (i, &ch) in chars.iter().enumerate() {
        if ch == ' ' {
            let prev = if i > 0 { chars[i - 1] } else { ' ' };
            let next = chars.get(i + 1).copied().unwrap_or(' ');
            let glue_before = matches!(next, '<' | '>' | ',' | ';' | ':' | '(' | ')' | ']');
            let glue_after = matches!(prev, '<' | ':' | '&' | '(' | '[');
            // `dyn Fn() -> T`, `impl Trait`: keep the space after `->` and `>` before a word.
            let arrow = prev == '>' && i >= 2 && chars[i - 2] == '-';
            if (glue_before || glue_after) && !arrow {
                continue;
            }
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(s: &str) -> Type {
        syn::parse_str(s).unwrap()
    }

    #[test]
    fn displays_types_as_written() {
        for s in [
            "String",
            "Link<Event>",
            "Option<Link<User>>",
            "chrono::DateTime<chrono::Utc>",
            "HashMap<String, Vec<u8>>",
            "[u8; 4]",
            "&'static str",
            "(i32, bool)",
            "Box<dyn Fn(u8) -> u8>",
        ] {
            assert_eq!(display(&ty(s)), s);
        }
    }

    #[test]
    fn shapes() {
        assert!(matches!(shape(&ty("Link<E>")), (Shape::Link { .. }, false)));
        assert!(matches!(shape(&ty("cache_core::Link<E>")), (Shape::Link { .. }, false)));
        assert!(matches!(shape(&ty("Option<Link<E>>")), (Shape::Link { .. }, true)));
        assert!(matches!(shape(&ty("Links<E>")), (Shape::Links { .. }, false)));
        assert!(matches!(shape(&ty("Option<String>")), (Shape::Scalar, true)));
        assert!(matches!(shape(&ty("String")), (Shape::Scalar, false)));
        assert!(is_optional_links(&ty("Option<Links<E>>")));
    }

    #[test]
    fn obvious_mistakes() {
        assert!(is_record_id(&ty("cache_core::RecordId")));
        assert!(!is_record_id(&ty("String")));
        assert_eq!(not_indexable(&ty("Vec<String>")), Some("a list"));
        assert_eq!(not_indexable(&ty("Option<Links<U>>")), Some("a multi-record link"));
        assert_eq!(not_indexable(&ty("[u8; 4]")), Some("a list"));
        assert_eq!(not_indexable(&ty("String")), None);
        assert_eq!(not_sortable(&ty("&str")), Some("text"));
        assert_eq!(not_sortable(&ty("Option<bool>")), Some("a boolean"));
        assert_eq!(not_sortable(&ty("i64")), None);
        assert_eq!(not_sortable(&ty("chrono::DateTime<chrono::Utc>")), None);
    }
}
