//! The derive input as the cache sees it: a [`Container`] of [`Field`]s, each keeping its
//! syn node for spans.

use syn::{Data, DeriveInput, Fields, Ident, Type, Visibility};

use super::{
    Ctxt, attr,
    ty::{self, Shape},
};

/// A struct deriving `Cacheable`.
pub(crate) struct Container<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) vis: &'a Visibility,
    pub(crate) attrs: attr::Container,
    pub(crate) fields: Vec<Field<'a>>,
}

/// One field of a struct deriving `Cacheable`.
pub(crate) struct Field<'a> {
    pub(crate) ident: &'a Ident,
    /// The Rust name without `r#`: the key in the cached form and in the schema.
    pub(crate) name: String,
    /// The name at the source.
    pub(crate) source_name: String,
    pub(crate) ty: &'a Type,
    pub(crate) shape: Shape<'a>,
    pub(crate) optional: bool,
    /// What the field takes when a source record leaves it out or sends `null`; `None` when
    /// it is read as it is (an error for a required field).
    pub(crate) default: Option<attr::FieldDefault>,
    pub(crate) attrs: attr::Field,
}

impl<'a> Container<'a> {
    /// Reads the input, reporting what is not a struct with named fields. `None` if it is not
    /// one (the attributes are still checked, to report everything at once).
    pub(crate) fn from_ast(cx: &Ctxt, input: &'a DeriveInput) -> Option<Self> {
        let attrs = attr::Container::from_ast(cx, &input.attrs);
        let fields = struct_fields(cx, input, "Cacheable")?;
        if attrs.entity.is_none() {
            cx.error_spanned_by(
                &input.ident,
                format!(
                    "missing `#[cache(entity = \"...\")]`: name the entity `{}` is cached as, e.g. `#[cache(entity = \"{}\")]`",
                    input.ident,
                    default_entity(&input.ident.to_string()),
                ),
            );
        }
        let fields = fields
            .iter()
            .filter_map(|field| Field::from_ast(cx, field, &attrs))
            .collect();
        Some(Self {
            ident: &input.ident,
            vis: &input.vis,
            attrs,
            fields,
        })
    }

    /// The `#[cache(id)]` field (after `check`, there is exactly one).
    pub(crate) fn id_field(&self) -> Option<&Field<'a>> {
        self.fields.iter().find(|f| f.attrs.id.is_some())
    }
}

impl<'a> Field<'a> {
    fn from_ast(cx: &Ctxt, field: &'a syn::Field, container: &attr::Container) -> Option<Self> {
        let ident = field.ident.as_ref()?;
        let attrs = attr::Field::from_ast(cx, &field.attrs);
        let name = unraw(ident);
        let (shape, optional) = ty::shape(&field.ty);
        let source_name = match (&attrs.source, &shape) {
            (Some(source), _) => source.value.clone(),
            (None, Shape::Link { .. }) => container.rename_all.apply_to_field(&format!("{name}_id")),
            (None, _) => container.rename_all.apply_to_field(&name),
        };
        let default = match &attrs.default {
            Some(default) => Some(default.value.clone()),
            None if container.default.is_some() && takes_container_default(&attrs, &shape, optional) => {
                Some(attr::FieldDefault::Trait)
            }
            None => None,
        };
        Some(Self {
            ident,
            name,
            source_name,
            ty: &field.ty,
            shape,
            optional,
            default,
            attrs,
        })
    }

    /// How the field is indexed: links always (exactly), scalars when `#[indexed]`; skipped
    /// fields and the id never.
    pub(crate) fn index(&self) -> Option<attr::Normalize> {
        if self.attrs.skip.is_some() || self.attrs.id.is_some() {
            return None;
        }
        match (&self.attrs.indexed, &self.shape) {
            (Some(indexed), _) => Some(indexed.value),
            (None, Shape::Link { .. }) => Some(attr::Normalize::Exact),
            (None, _) => None,
        }
    }

    pub(crate) fn is_stored(&self) -> bool {
        self.attrs.skip.is_none()
    }
}

/// Whether `#[cache(default)]` on the struct applies to a field. Not to the id (a record
/// without one is not a record), skipped fields (never read), a `Link<T>` (no default record;
/// `Option<Link<T>>` is already `None` when absent) or the version field (an invented version
/// would order the record's changes wrongly; an `Option` version is already `None`): these stay
/// as they are, and `check` rejects `#[cache(default)]` written on them.
fn takes_container_default(attrs: &attr::Field, shape: &Shape<'_>, optional: bool) -> bool {
    attrs.id.is_none()
        && attrs.skip.is_none()
        && attrs.version.is_none()
        && (optional || !matches!(shape, Shape::Link { .. }))
}

/// The named fields of a struct, or `None` after reporting why the input is not one.
pub(crate) fn struct_fields<'a>(
    cx: &Ctxt,
    input: &'a DeriveInput,
    derive: &str,
) -> Option<&'a syn::punctuated::Punctuated<syn::Field, syn::Token![,]>> {
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => Some(&named.named),
            Fields::Unnamed(unnamed) => {
                cx.error_spanned_by(
                    unnamed,
                    format!("`#[derive({derive})]` needs named fields (`struct {} {{ id: RecordId, .. }}`), not a tuple struct", input.ident),
                );
                None
            }
            Fields::Unit => {
                cx.error_spanned_by(
                    &input.ident,
                    format!("`#[derive({derive})]` needs a struct with named fields, not a unit struct"),
                );
                None
            }
        },
        Data::Enum(data) => {
            cx.error_spanned_by(
                data.enum_token,
                format!("`#[derive({derive})]` needs a struct with named fields, not an enum"),
            );
            None
        }
        Data::Union(data) => {
            cx.error_spanned_by(
                data.union_token,
                format!("`#[derive({derive})]` needs a struct with named fields, not a union"),
            );
            None
        }
    };
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        let message = format!(
            "`#[derive({derive})]` does not support generic structs: each model is one entity with one schema; use a concrete type"
        );
        match &input.generics.where_clause {
            Some(where_clause) if input.generics.params.is_empty() => cx.error_spanned_by(where_clause, message),
            _ => cx.error_spanned_by(&input.generics, message),
        }
        return None;
    }
    fields
}

/// `ident` without `r#`.
pub(crate) fn unraw(ident: &Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map(str::to_owned).unwrap_or(s)
}

/// A guess at an entity name for the "missing entity" hint: `ProjectTask` -> `project_tasks`.
fn default_entity(ident: &str) -> String {
    let mut out = String::new();
    for (i, ch) in ident.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.extend(ch.to_lowercase());
    }
    out.push('s');
    out
}
