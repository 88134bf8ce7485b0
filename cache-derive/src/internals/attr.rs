//! Attribute parsing: `#[cache(...)]`, `#[indexed]` and `#[sortable]`, one small builder per
//! key. Each value keeps the tokens it was written with, so that later checks can point at
//! them.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{Attribute, Ident, LitStr, Meta, Token, meta::ParseNestedMeta};

use super::{Ctxt, case::RenameRule};

/// The attribute that holds the container and field keys.
pub(crate) const CACHE: &str = "cache";
/// `#[indexed]`, `#[indexed(normalize = "lowercase")]`.
pub(crate) const INDEXED: &str = "indexed";
/// `#[sortable]`.
pub(crate) const SORTABLE: &str = "sortable";

const ENTITY: &str = "entity";
const SOURCE_TABLE: &str = "source_table";
const TTL: &str = "ttl";
const TOMBSTONE_TTL: &str = "tombstone_ttl";
const NEGATIVE_TTL: &str = "negative_ttl";
const RENAME_ALL: &str = "rename_all";
const CRATE: &str = "crate";
const VIEW_OF: &str = "view_of";
/// `#[cache(default)]` on the struct or a field, `#[cache(default = "path")]` on a field.
const DEFAULT: &str = "default";

const ID: &str = "id";
const SOURCE: &str = "source";
const SKIP: &str = "skip";
const VERSION: &str = "version";

const NORMALIZE: &str = "normalize";
const LOWERCASE: &str = "lowercase";
const EXACT: &str = "exact";

const CONTAINER_KEYS: &[&str] = &[
    ENTITY,
    SOURCE_TABLE,
    TTL,
    TOMBSTONE_TTL,
    NEGATIVE_TTL,
    RENAME_ALL,
    DEFAULT,
    CRATE,
];
const FIELD_KEYS: &[&str] = &[ID, SOURCE, SKIP, VERSION, DEFAULT];
const VIEW_CONTAINER_KEYS: &[&str] = &[VIEW_OF, CRATE];
const VIEW_FIELD_KEYS: &[&str] = &[SKIP];

/// Characters an entity name cannot contain: they mean something in store keys and key
/// patterns (the same set as record ids).
const FORBIDDEN_ENTITY_CHARS: &[char] = &[':', '*', '?', '[', ']', '{', '}', '\\'];

/// A value with the tokens it came from.
pub(crate) struct Spanned<T> {
    pub(crate) tokens: TokenStream,
    pub(crate) value: T,
}

/// One key of an attribute: set at most once.
struct Attr<'c, T> {
    cx: &'c Ctxt,
    /// How the key is written, for messages: `#[cache(ttl)]`.
    display: String,
    value: Option<Spanned<T>>,
}

impl<'c, T> Attr<'c, T> {
    fn none(cx: &'c Ctxt, display: impl Into<String>) -> Self {
        Self {
            cx,
            display: display.into(),
            value: None,
        }
    }

    fn set<A: ToTokens>(&mut self, obj: A, value: T) {
        let tokens = obj.into_token_stream();
        if self.value.is_some() {
            self.cx
                .error_spanned_by(tokens, format!("duplicate attribute `{}`", self.display));
        } else {
            self.value = Some(Spanned { tokens, value });
        }
    }

    fn get(self) -> Option<Spanned<T>> {
        self.value
    }
}

fn cache_key(key: &str) -> String {
    format!("#[{CACHE}({key})]")
}

/// How an indexed field's values are normalised.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Normalize {
    Exact,
    Lowercase,
}

/// What a field absent from a source record takes.
#[derive(Clone)]
pub(crate) enum FieldDefault {
    /// `#[cache(default)]`: `Default::default()` of the field's type.
    Trait,
    /// `#[cache(default = "path")]`: what the function at `path` returns.
    Path(syn::ExprPath),
}

/// The container attributes of `#[derive(Cacheable)]`.
pub(crate) struct Container {
    pub(crate) entity: Option<Spanned<String>>,
    pub(crate) source_table: Option<String>,
    /// Milliseconds.
    pub(crate) ttl: Option<u64>,
    /// Milliseconds.
    pub(crate) tombstone_ttl: Option<u64>,
    /// `negative_ttl = "5m"`, in milliseconds.
    pub(crate) negative_ttl: Option<u64>,
    pub(crate) rename_all: RenameRule,
    /// `#[cache(default)]`: absent fields take their type's default (see `ast::Field::default`
    /// for which fields).
    pub(crate) default: Option<Spanned<()>>,
    pub(crate) krate: syn::Path,
}

/// The field attributes of `#[derive(Cacheable)]`.
pub(crate) struct Field {
    pub(crate) id: Option<Spanned<()>>,
    pub(crate) source: Option<Spanned<String>>,
    pub(crate) skip: Option<Spanned<()>>,
    pub(crate) version: Option<Spanned<()>>,
    /// Spanned by the `default` key.
    pub(crate) default: Option<Spanned<FieldDefault>>,
    pub(crate) indexed: Option<Spanned<Normalize>>,
    pub(crate) sortable: Option<Spanned<()>>,
}

/// The container attributes of `#[derive(CacheView)]`.
pub(crate) struct ViewContainer {
    pub(crate) view_of: Option<syn::Type>,
    pub(crate) krate: syn::Path,
}

/// The field attributes of `#[derive(CacheView)]`.
pub(crate) struct ViewField {
    pub(crate) skip: Option<Spanned<()>>,
}

/// `::cache_core`, the path the generated code names the crate by unless told otherwise.
pub(crate) fn default_crate_path() -> syn::Path {
    syn::parse_quote!(::cache_core)
}

impl Container {
    pub(crate) fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut entity = Attr::none(cx, cache_key(ENTITY));
        let mut source_table = Attr::none(cx, cache_key(SOURCE_TABLE));
        let mut ttl = Attr::none(cx, cache_key(TTL));
        let mut tombstone_ttl = Attr::none(cx, cache_key(TOMBSTONE_TTL));
        let mut negative_ttl = Attr::none(cx, cache_key(NEGATIVE_TTL));
        let mut rename_all = Attr::none(cx, cache_key(RENAME_ALL));
        let mut default = Attr::none(cx, cache_key(DEFAULT));
        let mut krate = Attr::none(cx, cache_key(CRATE));

        for attr in attrs {
            if attr.path().is_ident(INDEXED) || attr.path().is_ident(SORTABLE) {
                cx.error_spanned_by(
                    attr,
                    format!("`#[{}]` goes on a field, not on the struct", path_name(attr)),
                );
                continue;
            }
            if !attr.path().is_ident(CACHE) {
                continue;
            }
            let result = attr.parse_nested_meta(|meta| {
                let key = key_name(&meta);
                match key.as_str() {
                    ENTITY => {
                        let lit = string_value(&meta)?;
                        // Set even when invalid: the error is reported, and "missing entity" would
                        // only repeat it.
                        check_entity(cx, &lit);
                        entity.set(&meta.path, lit.value());
                    }
                    SOURCE_TABLE => {
                        let lit = string_value(&meta)?;
                        if lit.value().is_empty() {
                            cx.error_spanned_by(&lit, "`source_table` cannot be empty");
                        }
                        source_table.set(&meta.path, lit.value());
                    }
                    TTL | TOMBSTONE_TTL | NEGATIVE_TTL => {
                        let lit = string_value(&meta)?;
                        match parse_duration(&lit.value()) {
                            Ok(ms) if key == TTL => ttl.set(&meta.path, ms),
                            Ok(ms) if key == TOMBSTONE_TTL => tombstone_ttl.set(&meta.path, ms),
                            Ok(ms) => negative_ttl.set(&meta.path, ms),
                            Err(why) => cx.error_spanned_by(
                                &lit,
                                format!(
                                    "invalid `{key} = {}`: {why}; write a duration like \"30s\", \"15m\", \"8h\", \"1d\" or \"1h30m\" (units: ms, s, m, h, d)",
                                    lit.token()
                                ),
                            ),
                        }
                    }
                    RENAME_ALL => {
                        let lit = string_value(&meta)?;
                        match RenameRule::from_str(&lit.value()) {
                            Ok(rule) => rename_all.set(&meta.path, rule),
                            Err(msg) => cx.error_spanned_by(&lit, msg),
                        }
                    }
                    DEFAULT if meta.input.peek(Token![=]) => {
                        skip_value(&meta)?;
                        cx.error_spanned_by(
                            &meta.path,
                            format!(
                                "`{DEFAULT} = \"...\"` goes on a field; on the struct, write `#[{CACHE}({DEFAULT})]`: every field absent at the source takes its type's `Default::default()`"
                            ),
                        );
                    }
                    DEFAULT => default.set(&meta.path, ()),
                    CRATE => {
                        let lit = string_value(&meta)?;
                        krate.set(&meta.path, lit.parse::<syn::Path>()?);
                    }
                    _ => unknown_key(cx, &meta, &key, Position::Container)?,
                }
                Ok(())
            });
            if let Err(err) = result {
                cx.syn_error(err);
            }
        }

        Self {
            entity: entity.get(),
            source_table: source_table.get().map(|s| s.value),
            ttl: ttl.get().map(|s| s.value),
            tombstone_ttl: tombstone_ttl.get().map(|s| s.value),
            negative_ttl: negative_ttl.get().map(|s| s.value),
            rename_all: rename_all.get().map_or(RenameRule::None, |s| s.value),
            default: default.get(),
            krate: krate.get().map_or_else(default_crate_path, |s| s.value),
        }
    }
}

impl Field {
    pub(crate) fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut id = Attr::none(cx, cache_key(ID));
        let mut source = Attr::none(cx, cache_key(SOURCE));
        let mut skip = Attr::none(cx, cache_key(SKIP));
        let mut version = Attr::none(cx, cache_key(VERSION));
        let mut default = Attr::none(cx, cache_key(DEFAULT));
        let mut indexed = Attr::none(cx, format!("#[{INDEXED}]"));
        let mut sortable = Attr::none(cx, format!("#[{SORTABLE}]"));

        for attr in attrs {
            if attr.path().is_ident(INDEXED) {
                match &attr.meta {
                    Meta::Path(_) => indexed.set(attr, Normalize::Exact),
                    Meta::List(_) => {
                        let mut normalize = Normalize::Exact;
                        let result = attr.parse_nested_meta(|meta| {
                            let key = key_name(&meta);
                            if key == NORMALIZE {
                                let lit = string_value(&meta)?;
                                match lit.value().as_str() {
                                    LOWERCASE => normalize = Normalize::Lowercase,
                                    EXACT => normalize = Normalize::Exact,
                                    other => cx.error_spanned_by(
                                        &lit,
                                        format!(
                                            "unknown normalization `{other}`; expected \"{LOWERCASE}\" or \"{EXACT}\""
                                        ),
                                    ),
                                }
                                Ok(())
                            } else {
                                skip_value(&meta)?;
                                cx.error_spanned_by(
                                    &meta.path,
                                    format!("unknown `#[{INDEXED}]` option `{key}`; expected `{NORMALIZE}`"),
                                );
                                Ok(())
                            }
                        });
                        match result {
                            Ok(()) => indexed.set(attr, normalize),
                            Err(err) => cx.syn_error(err),
                        }
                    }
                    Meta::NameValue(_) => cx.error_spanned_by(
                        attr,
                        format!("expected `#[{INDEXED}]` or `#[{INDEXED}({NORMALIZE} = \"{LOWERCASE}\")]`"),
                    ),
                }
                continue;
            }
            if attr.path().is_ident(SORTABLE) {
                match &attr.meta {
                    Meta::Path(_) => sortable.set(attr, ()),
                    _ => cx.error_spanned_by(attr, format!("`#[{SORTABLE}]` takes no arguments")),
                }
                continue;
            }
            if !attr.path().is_ident(CACHE) {
                continue;
            }
            let result = attr.parse_nested_meta(|meta| {
                let key = key_name(&meta);
                match key.as_str() {
                    ID => id.set(&meta.path, ()),
                    SKIP => skip.set(&meta.path, ()),
                    VERSION => version.set(&meta.path, ()),
                    DEFAULT if meta.input.peek(Token![=]) => {
                        let lit = string_value(&meta)?;
                        match lit.parse::<syn::ExprPath>() {
                            Ok(path) => default.set(&meta.path, FieldDefault::Path(path)),
                            Err(_) => cx.error_spanned_by(
                                &lit,
                                format!(
                                    "invalid `{DEFAULT} = {}`: expected the path of a function that returns the field's type, like `{DEFAULT} = \"default_points\"` or `{DEFAULT} = \"Points::zero\"`",
                                    lit.token()
                                ),
                            ),
                        }
                    }
                    DEFAULT => default.set(&meta.path, FieldDefault::Trait),
                    SOURCE => {
                        let lit = string_value(&meta)?;
                        if lit.value().is_empty() {
                            cx.error_spanned_by(&lit, "`source` cannot be empty");
                        }
                        source.set(&lit, lit.value());
                    }
                    _ => unknown_key(cx, &meta, &key, Position::Field)?,
                }
                Ok(())
            });
            if let Err(err) = result {
                cx.syn_error(err);
            }
        }

        Self {
            id: id.get(),
            source: source.get(),
            skip: skip.get(),
            version: version.get(),
            default: default.get(),
            indexed: indexed.get(),
            sortable: sortable.get(),
        }
    }
}

impl ViewContainer {
    pub(crate) fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut view_of = Attr::none(cx, cache_key(VIEW_OF));
        let mut krate = Attr::none(cx, cache_key(CRATE));
        for attr in attrs.iter().filter(|a| a.path().is_ident(CACHE)) {
            let result = attr.parse_nested_meta(|meta| {
                let key = key_name(&meta);
                match key.as_str() {
                    VIEW_OF => {
                        let ty: syn::Type = meta.value()?.parse()?;
                        view_of.set(&meta.path, ty);
                    }
                    CRATE => {
                        let lit = string_value(&meta)?;
                        krate.set(&meta.path, lit.parse::<syn::Path>()?);
                    }
                    _ => unknown_key(cx, &meta, &key, Position::ViewContainer)?,
                }
                Ok(())
            });
            if let Err(err) = result {
                cx.syn_error(err);
            }
        }
        Self {
            view_of: view_of.get().map(|s| s.value),
            krate: krate.get().map_or_else(default_crate_path, |s| s.value),
        }
    }
}

impl ViewField {
    pub(crate) fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut skip = Attr::none(cx, cache_key(SKIP));
        for attr in attrs.iter().filter(|a| a.path().is_ident(CACHE)) {
            let result = attr.parse_nested_meta(|meta| {
                let key = key_name(&meta);
                match key.as_str() {
                    SKIP => skip.set(&meta.path, ()),
                    _ => unknown_key(cx, &meta, &key, Position::ViewField)?,
                }
                Ok(())
            });
            if let Err(err) = result {
                cx.syn_error(err);
            }
        }
        Self { skip: skip.get() }
    }
}

/// The `crate = "..."` of a container, read leniently (errors ignored), for the placeholder
/// impl emitted when expansion fails.
pub(crate) fn crate_path_lenient(attrs: &[Attribute]) -> syn::Path {
    let mut found = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident(CACHE)) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident(CRATE) {
                found = Some(meta.value()?.parse::<LitStr>()?.parse::<syn::Path>()?);
            } else {
                skip_value(&meta)?;
            }
            Ok(())
        });
    }
    found.unwrap_or_else(default_crate_path)
}

fn path_name(attr: &Attribute) -> String {
    attr.path().get_ident().map(Ident::to_string).unwrap_or_default()
}

/// The key as written, without `r#` (`crate` can only be written as a keyword).
fn key_name(meta: &ParseNestedMeta<'_>) -> String {
    let path = &meta.path;
    let name = quote::quote!(#path).to_string().replace(' ', "");
    name.strip_prefix("r#").map(str::to_owned).unwrap_or(name)
}

fn string_value(meta: &ParseNestedMeta<'_>) -> syn::Result<LitStr> {
    let key = key_name(meta);
    let value = meta.value()?;
    value
        .parse::<LitStr>()
        .map_err(|err| syn::Error::new(err.span(), format!("expected a string: `{key} = \"...\"`")))
}

/// Consumes the value of a key we are not going to use (`= expr` or `(...)`), so that parsing
/// goes on to report the attribute's other keys.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| skip_value(&inner))?;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    Container,
    Field,
    ViewContainer,
    ViewField,
}

fn unknown_key(cx: &Ctxt, meta: &ParseNestedMeta<'_>, key: &str, position: Position) -> syn::Result<()> {
    skip_value(meta)?;
    let (what, keys, elsewhere, elsewhere_is) = match position {
        Position::Container => ("cache attribute", CONTAINER_KEYS, FIELD_KEYS, "a field attribute"),
        Position::Field => ("field attribute", FIELD_KEYS, CONTAINER_KEYS, "a struct attribute"),
        Position::ViewContainer => (
            "cache attribute",
            VIEW_CONTAINER_KEYS,
            VIEW_FIELD_KEYS,
            "a field attribute",
        ),
        Position::ViewField => (
            "field attribute",
            VIEW_FIELD_KEYS,
            VIEW_CONTAINER_KEYS,
            "a struct attribute",
        ),
    };
    let mut message = format!("unknown {what} `{key}`");
    let is_model = matches!(position, Position::Container | Position::Field);
    if is_model && (key == INDEXED || key == SORTABLE) {
        message.push_str(&format!(": write `#[{key}]` on the field, not `#[{CACHE}({key})]`"));
    } else if elsewhere.contains(&key) {
        message.push_str(&format!(": `{}` is {elsewhere_is}", cache_key(key)));
    } else if let Some(close) = closest(key, keys) {
        message.push_str(&format!("; did you mean `{close}`?"));
    } else if position == Position::Field
        && let Some(close) = closest(key, &[INDEXED, SORTABLE])
    {
        message.push_str(&format!("; did you mean `#[{close}]`?"));
    } else {
        let list: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
        message.push_str(&format!("; expected one of {}", list.join(", ")));
    }
    cx.error_spanned_by(&meta.path, message);
    Ok(())
}

/// The known key closest to a misspelt one, if it is close (at most 2 edits).
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            row.push((prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()]
}

/// Validates an entity name, reporting what is wrong with it.
fn check_entity(cx: &Ctxt, lit: &LitStr) {
    let name = lit.value();
    if name.is_empty() {
        cx.error_spanned_by(lit, "`entity` cannot be empty");
        return;
    }
    if let Some(ch) = name
        .chars()
        .find(|&ch| ch.is_whitespace() || ch.is_control() || FORBIDDEN_ENTITY_CHARS.contains(&ch))
    {
        cx.error_spanned_by(
            lit,
            format!(
                "invalid `entity = {}`: an entity name cannot contain {ch:?}; it is part of every store key, where whitespace and `: * ? [ ] {{ }} \\` have a meaning",
                lit.token()
            ),
        );
    }
}

/// Parses a humane duration (`30s`, `15m`, `8h`, `1d`, `500ms`, `1h30m`) into milliseconds.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    if text.is_empty() {
        return Err("empty duration".to_owned());
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(format!("expected a number at `{rest}`"));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| "number too large".to_owned())?;
        rest = &rest[digits..];
        let unit_len = rest.len() - rest.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
        let unit = &rest[..unit_len];
        let per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("missing unit after `{number}`")),
            other => return Err(format!("unknown unit `{other}`")),
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(per_unit)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(|| "duration too large".to_owned())?;
    }
    if total == 0 {
        return Err("a duration must be longer than zero".to_owned());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(30_000));
        assert_eq!(parse_duration("15m"), Ok(900_000));
        assert_eq!(parse_duration("8h"), Ok(8 * 3_600_000));
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("8 hours"), Err("unknown unit ` hours`".to_owned()));
        assert!(parse_duration("8").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest("ttll", CONTAINER_KEYS), Some("ttl"));
        assert_eq!(closest("indxed", &[INDEXED, SORTABLE]), Some("indexed"));
        assert_eq!(closest("zzzzzz", FIELD_KEYS), None);
    }
}
