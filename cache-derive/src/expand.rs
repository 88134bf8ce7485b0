//! Code generation for `#[derive(Cacheable)]`.
//!
//! What is generated, for `struct Project`:
//! - `enum ProjectSort` (when some field is `#[sortable]`), next to the struct so users can
//!   name it;
//! - in an anonymous `const _: () = { ... };` block: `impl Cacheable for Project`, the
//!   `by_*` query constructors (an inherent impl, so still reachable as `Project::by_slug`),
//!   and two private serde helper structs for the cached form (`__CachedRef<'a>` borrows the
//!   record to serialise it, `__Cached` owns what is deserialised), so that the cached form
//!   never depends on the user's own serde attributes and never goes through
//!   `serde_json::Value`.
//!
//! Trait bounds on user types (`IndexValue`, `SortKey`, `Cacheable` for link targets,
//! `Default` for skipped and defaulted fields) are generated with the span of the field's type, so that a
//! missing impl is reported on the type the user wrote.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::{DeriveInput, Ident, spanned::Spanned as _};

use crate::internals::{
    Ctxt,
    ast::{Container, Field},
    attr::{self, Normalize},
    case, check,
    ty::{self, Shape},
};

/// Expands `#[derive(Cacheable)]`, or returns every error found in the input.
pub(crate) fn derive_cacheable(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let cont = Container::from_ast(&cx, input);
    if let Some(cont) = &cont {
        check::check(&cx, cont);
    }
    cx.check()?;
    match cont {
        Some(cont) => Ok(expand(&cont)),
        // `from_ast` reports an error whenever it returns `None`, so `check` returned it.
        None => Err(syn::Error::new(Span::call_site(), "`#[derive(Cacheable)]` failed")),
    }
}

/// An impl with the right trait and type but no behaviour, emitted next to the errors when
/// expansion fails, so that the rest of the user's code still type-checks and the user sees
/// only the real errors. Generic inputs get none: an impl for them would only add errors.
pub(crate) fn placeholder(input: &DeriveInput) -> TokenStream {
    if !input.generics.params.is_empty() {
        return TokenStream::new();
    }
    let krate = attr::crate_path_lenient(&input.attrs);
    let ident = &input.ident;
    quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #krate::Cacheable for #ident {
                type Sort = #krate::__private::NoSort;
                fn schema() -> &'static #krate::__private::EntitySchema {
                    ::core::unimplemented!("`#[derive(Cacheable)]` failed")
                }
                fn id(&self) -> &#krate::RecordId {
                    ::core::unimplemented!("`#[derive(Cacheable)]` failed")
                }
                fn version(&self) -> ::core::option::Option<f64> {
                    ::core::unimplemented!("`#[derive(Cacheable)]` failed")
                }
                fn index_entries(&self) -> #krate::__private::IndexEntries {
                    ::core::unimplemented!("`#[derive(Cacheable)]` failed")
                }
                fn to_cached(&self) -> ::core::result::Result<::std::vec::Vec<u8>, #krate::__private::ModelError> {
                    ::core::unimplemented!("`#[derive(Cacheable)]` failed")
                }
                fn from_cached(_: &[u8]) -> ::core::result::Result<Self, #krate::__private::ModelError> {
                    ::core::unimplemented!("`#[derive(Cacheable)]` failed")
                }
                fn to_source(&self) -> ::core::result::Result<#krate::__private::SourceRecord, #krate::__private::ModelError> {
                    ::core::unimplemented!("`#[derive(Cacheable)]` failed")
                }
                fn from_source(_: #krate::__private::SourceRecord) -> ::core::result::Result<Self, #krate::__private::ModelError> {
                    ::core::unimplemented!("`#[derive(Cacheable)]` failed")
                }
            }
        };
    }
}

fn expand(cont: &Container<'_>) -> TokenStream {
    let krate = &cont.attrs.krate;
    let ident = cont.ident;
    let entity = cont.attrs.entity.as_ref().map(|e| e.value.clone()).unwrap_or_default();
    let id_field = cont.id_field();
    let id_ident = id_field.map(|f| f.ident);
    let id_name = id_field.map(|f| f.name.clone()).unwrap_or_default();
    let fields: Vec<&Field<'_>> = cont.fields.iter().filter(|f| f.attrs.id.is_none()).collect();
    let stored: Vec<&Field<'_>> = fields.iter().copied().filter(|f| f.is_stored()).collect();

    let (sort_enum, sort_ty, sort_impl) = sort(cont);
    let schema = schema(cont, &entity, &id_name, &fields);
    let version = match cont.fields.iter().find(|f| f.attrs.version.is_some()) {
        Some(f) => {
            let (fi, ty) = (f.ident, f.ty);
            quote!(#krate::__private::version::<#ty>(&self.#fi))
        }
        None => quote!(::core::option::Option::None),
    };
    let index_entries = index_entries(cont);
    let bounds = field_bounds(cont);
    let queries = queries(cont, &bounds);
    let (cached_structs, to_cached, from_cached) = cached(cont, &entity, &stored, &bounds);
    let to_source = to_source(cont, &entity, &stored);
    let from_source = from_source(cont, &entity);

    quote! {
        #sort_enum

        #[doc(hidden)]
        #[allow(unused_qualifications, non_camel_case_types)]
        const _: () = {
            #cached_structs

            #sort_impl

            #queries

            #[automatically_derived]
            impl #krate::Cacheable for #ident #bounds {
                type Sort = #sort_ty;

                fn schema() -> &'static #krate::__private::EntitySchema {
                    #schema
                }

                #[inline]
                fn id(&self) -> &#krate::RecordId {
                    &self.#id_ident
                }

                #[inline]
                fn version(&self) -> ::core::option::Option<f64> {
                    #version
                }

                fn index_entries(&self) -> #krate::__private::IndexEntries {
                    #index_entries
                }

                fn to_cached(&self) -> ::core::result::Result<::std::vec::Vec<u8>, #krate::__private::ModelError> {
                    #to_cached
                }

                fn from_cached(bytes: &[u8]) -> ::core::result::Result<Self, #krate::__private::ModelError> {
                    #from_cached
                }

                fn to_source(&self) -> ::core::result::Result<#krate::__private::SourceRecord, #krate::__private::ModelError> {
                    #to_source
                }

                fn from_source(record: #krate::__private::SourceRecord) -> ::core::result::Result<Self, #krate::__private::ModelError> {
                    #from_source
                }

                // `Some(clone)` when the model is `Clone`, `None` otherwise (see `NearCopy`).
                #[inline]
                fn near_copy(&self) -> ::core::option::Option<Self> {
                    #[allow(unused_imports)]
                    use #krate::__private::{CopyByClone as _, NoCopy as _};
                    (&&#krate::__private::NearCopy(self)).__near_copy()
                }
            }
        };
    }
}

/// What the generated code needs of the user's field types, as a `where` clause with each
/// bound spanned on the field's type.
///
/// The same clause goes on every generated item that relies on it (the `Cacheable` impl, the
/// `by_*` impl, the serde helper structs, whose derived impls copy it). A bound that does not
/// hold is then a "trivially false" bound: rustc reports it once, on the field type, and
/// checks the bodies as if it held, so a field of the wrong type gives one error rather than
/// one per use. (The identical reports from each item are deduplicated by rustc.) Link targets
/// are left out: models linking to each other would make the bounds cyclic.
fn field_bounds(cont: &Container<'_>) -> TokenStream {
    let krate = &cont.attrs.krate;
    let mut bounds = Vec::new();
    for f in cont.fields.iter().filter(|f| f.attrs.id.is_none()) {
        let ty = f.ty;
        let krate = respan(krate, ty.span());
        if !f.is_stored() {
            bounds.push(quote_spanned!(ty.span()=> #ty: ::core::default::Default));
            continue;
        }
        if matches!(f.shape, Shape::Scalar) {
            bounds.push(quote_spanned!(ty.span()=>
                #ty: #krate::__private::serde::Serialize + #krate::__private::serde::de::DeserializeOwned
            ));
            // Links have a default (`None`, empty) whatever their target.
            if matches!(f.default, Some(attr::FieldDefault::Trait)) {
                bounds.push(quote_spanned!(ty.span()=> #ty: ::core::default::Default));
            }
        }
        if f.attrs.indexed.is_some() {
            bounds.push(quote_spanned!(ty.span()=> #ty: #krate::IndexValue));
        }
        if f.attrs.sortable.is_some() || f.attrs.version.is_some() {
            bounds.push(quote_spanned!(ty.span()=> #ty: #krate::__private::SortKey));
        }
    }
    if bounds.is_empty() {
        return TokenStream::new();
    }
    quote!(where #(#bounds,)*)
}

/// The crate path with every token at `span`: `quote_spanned!` only sets the span of the
/// tokens it writes, and rustc points an unmet bound at the whole bound, so a bound with a
/// call-site path in it would point at the derive instead of the field.
fn respan(krate: &syn::Path, span: Span) -> TokenStream {
    krate
        .to_token_stream()
        .into_iter()
        .map(|mut token| {
            token.set_span(span);
            token
        })
        .collect()
}

fn index_kind(krate: &syn::Path, normalize: Normalize) -> TokenStream {
    match normalize {
        Normalize::Exact => quote!(#krate::__private::IndexKind::Exact),
        Normalize::Lowercase => quote!(#krate::__private::IndexKind::Lowercase),
    }
}

/// The sort enum (outside the `const _` block, so users can name it), the `Sort` type and
/// the enum's `SortField` impl.
fn sort(cont: &Container<'_>) -> (TokenStream, TokenStream, TokenStream) {
    let krate = &cont.attrs.krate;
    let sortable: Vec<&Field<'_>> = cont.fields.iter().filter(|f| f.attrs.sortable.is_some()).collect();
    if sortable.is_empty() {
        return (
            TokenStream::new(),
            quote!(#krate::__private::NoSort),
            TokenStream::new(),
        );
    }
    let vis = cont.vis;
    let enum_ident = format_ident!("{}Sort", cont.ident);
    let variants: Vec<Ident> = sortable
        .iter()
        .map(|f| Ident::new(&case::pascal(&f.name), f.ident.span()))
        .collect();
    let names: Vec<&str> = sortable.iter().map(|f| f.name.as_str()).collect();
    let variant_docs = names.iter().map(|n| format!("By `{n}`."));
    let doc = format!(
        "The sortable fields of `{}`, for `Query::sort`, `Query::asc` and `Query::desc`. Generated by `#[derive(Cacheable)]`.",
        cont.ident
    );
    let sort_enum = quote! {
        #[doc = #doc]
        #[derive(
            ::core::fmt::Debug,
            ::core::clone::Clone,
            ::core::marker::Copy,
            ::core::cmp::PartialEq,
            ::core::cmp::Eq,
            ::core::hash::Hash,
        )]
        #[allow(dead_code)]
        #vis enum #enum_ident {
            #(
                #[doc = #variant_docs]
                #variants,
            )*
        }
    };
    let sort_impl = quote! {
        #[automatically_derived]
        impl #krate::__private::SortField for #enum_ident {
            fn field_name(self) -> &'static str {
                match self {
                    #(Self::#variants => #names,)*
                }
            }
        }
    };
    (sort_enum, quote!(#enum_ident), sort_impl)
}

/// The body of `schema()`: a `LazyLock` built once.
fn schema(cont: &Container<'_>, entity: &str, id_name: &str, fields: &[&Field<'_>]) -> TokenStream {
    let krate = &cont.attrs.krate;
    let type_name = cont.ident.to_string();
    let mut calls = TokenStream::new();
    if let Some(table) = &cont.attrs.source_table {
        calls.extend(quote!(.source_table(#table)));
    }
    if let Some(ms) = cont.attrs.ttl {
        calls.extend(quote!(.ttl(::core::time::Duration::from_millis(#ms))));
    }
    if let Some(ms) = cont.attrs.tombstone_ttl {
        calls.extend(quote!(.tombstone_ttl(::core::time::Duration::from_millis(#ms))));
    }
    if let Some(ms) = cont.attrs.negative_ttl {
        calls.extend(quote!(.negative_ttl(::core::time::Duration::from_millis(#ms))));
    }
    if let Some(version) = cont.fields.iter().find(|f| f.attrs.version.is_some()) {
        let name = &version.name;
        calls.extend(quote!(.version_field(#name)));
    }
    for f in fields {
        let name = &f.name;
        let source_name = &f.source_name;
        let rust_type = ty::display(f.ty);
        let kind = match f.shape {
            Shape::Scalar => quote!(#krate::__private::FieldKind::Scalar),
            Shape::Link { target } => {
                let krate = respan(krate, target.span());
                quote_spanned!(target.span()=> #krate::__private::FieldKind::Link { target: <#target as #krate::Cacheable>::schema })
            }
            Shape::Links { target } => {
                let krate = respan(krate, target.span());
                quote_spanned!(target.span()=> #krate::__private::FieldKind::Links { target: <#target as #krate::Cacheable>::schema })
            }
        };
        let optional = f.optional;
        let index = match f.index() {
            Some(normalize) => {
                let kind = index_kind(krate, normalize);
                quote!(::core::option::Option::Some(#kind))
            }
            None => quote!(::core::option::Option::None),
        };
        let sortable = f.attrs.sortable.is_some();
        let skipped = !f.is_stored();
        let field = quote!(#krate::__private::field(#name, #source_name, #rust_type, #kind, #optional, #index, #sortable, #skipped));
        let field = if f.default.is_some() {
            quote!({
                let mut __field = #field;
                __field.default = true;
                __field
            })
        } else {
            field
        };
        calls.extend(quote!(.field(#field)));
    }
    quote! {
        static __SCHEMA: #krate::__private::LazyLock<#krate::__private::EntitySchema> = #krate::__private::LazyLock::new(|| {
            #krate::__private::EntitySchema::builder(#entity)
                .type_name(#type_name)
                .id_field(#id_name)
                #calls
                .build()
        });
        &__SCHEMA
    }
}

/// The body of `index_entries()`.
fn index_entries(cont: &Container<'_>) -> TokenStream {
    let krate = &cont.attrs.krate;
    let mut pushes = TokenStream::new();
    for f in &cont.fields {
        let (fi, ty, name) = (f.ident, f.ty, &f.name);
        if let Some(normalize) = f.index() {
            let kind = index_kind(krate, normalize);
            let value = quote!(#krate::__private::index_value::<#ty>(&self.#fi, #kind));
            pushes.extend(quote! {
                if let ::core::option::Option::Some(__value) = #value {
                    __entries.tags.push((::std::string::String::from(#name), __value));
                }
            });
        }
        if f.attrs.sortable.is_some() {
            let score = quote!(#krate::__private::sort_score::<#ty>(&self.#fi));
            pushes.extend(quote! {
                __entries.scores.push((::std::string::String::from(#name), #score));
            });
        }
    }
    if pushes.is_empty() {
        return quote!(#krate::__private::IndexEntries::default());
    }
    quote! {
        let mut __entries = #krate::__private::IndexEntries::default();
        #pushes
        __entries
    }
}

/// The `by_*` query constructors, one per indexed field.
fn queries(cont: &Container<'_>, bounds: &TokenStream) -> TokenStream {
    let krate = &cont.attrs.krate;
    let ident = cont.ident;
    let vis = cont.vis;
    let fns: Vec<TokenStream> = cont
        .fields
        .iter()
        .filter_map(|f| {
            let normalize = f.index()?;
            let (ty, name) = (f.ty, &f.name);
            let fn_ident = Ident::new(&format!("by_{name}"), f.ident.span());
            let kind = index_kind(krate, normalize);
            let compared = match normalize {
                Normalize::Exact => "",
                Normalize::Lowercase => " (compared trimmed and lower-cased)",
            };
            let doc =
                format!("`{ident}` records whose `{name}` is `value`{compared}. Generated by `#[derive(Cacheable)]`.");
            let arg = quote!(<#ty as #krate::IndexValue>::Arg);
            Some(quote! {
                #[doc = #doc]
                #[must_use]
                #vis fn #fn_ident(value: &#arg) -> #krate::Query<Self> {
                    #krate::Query::filter_unchecked(#name, #krate::__private::index_arg::<#ty>(value, #kind))
                }
            })
        })
        .collect();
    if fns.is_empty() {
        return TokenStream::new();
    }
    quote! {
        #[automatically_derived]
        #[allow(dead_code)]
        impl #ident #bounds {
            #(#fns)*
        }
    }
}

/// The cached-form helper structs and the bodies of `to_cached()` / `from_cached()`.
fn cached(
    cont: &Container<'_>,
    entity: &str,
    stored: &[&Field<'_>],
    bounds: &TokenStream,
) -> (TokenStream, TokenStream, TokenStream) {
    let krate = &cont.attrs.krate;
    let serde_path = format!("{}::__private::serde", quote!(#krate)).replace(' ', "");
    let id = cont.id_field();
    // The id first: the cached form reads like the record (`{"id":"recP1","name":...}`).
    let all: Vec<&Field<'_>> = id.into_iter().chain(stored.iter().copied()).collect();
    let idents: Vec<&Ident> = all.iter().map(|f| f.ident).collect();
    let names: Vec<&str> = all.iter().map(|f| f.name.as_str()).collect();
    let tys: Vec<&syn::Type> = all.iter().map(|f| f.ty).collect();
    let structs = quote! {
        #[derive(#krate::__private::serde::Serialize)]
        #[serde(crate = #serde_path)]
        struct __CachedRef<'__a> #bounds {
            #(
                #[serde(rename = #names)]
                #idents: &'__a #tys,
            )*
        }

        #[derive(#krate::__private::serde::Deserialize)]
        #[serde(crate = #serde_path)]
        struct __Cached #bounds {
            #(
                #[serde(rename = #names)]
                #idents: #tys,
            )*
        }
    };
    let to_cached = quote! {
        #krate::__private::to_cached(#entity, &__CachedRef {
            #(#idents: &self.#idents,)*
        })
    };
    let skipped = cont.fields.iter().filter(|f| !f.is_stored()).map(|f| {
        let (fi, ty) = (f.ident, f.ty);
        let default = quote!(<#ty as ::core::default::Default>::default());
        quote!(#fi: #default)
    });
    let from_cached = quote! {
        let __cached: __Cached = #krate::__private::from_cached(#entity, bytes)?;
        ::core::result::Result::Ok(Self {
            #(#idents: __cached.#idents,)*
            #(#skipped,)*
        })
    };
    (structs, to_cached, from_cached)
}

/// The body of `to_source()`: fields by source name, single links as one-element arrays,
/// absent values left out.
fn to_source(cont: &Container<'_>, entity: &str, stored: &[&Field<'_>]) -> TokenStream {
    let krate = &cont.attrs.krate;
    let id = cont.id_field().map(|f| f.ident);
    let inserts = stored.iter().map(|f| {
        let (fi, ty, source_name) = (f.ident, f.ty, &f.source_name);
        let value = match (&f.shape, f.optional) {
            (Shape::Link { .. }, false) => quote!(#krate::Link::to_source(&self.#fi)),
            (Shape::Link { .. }, true) => quote!(#krate::__private::optional_link_to_source(&self.#fi)),
            (Shape::Links { .. }, _) => quote!(#krate::Links::to_source(&self.#fi)),
            (Shape::Scalar, _) => {
                quote!(#krate::__private::scalar_to_source::<#ty>(#entity, &self.#fi)?)
            }
        };
        quote!(#krate::__private::insert_source(&mut __fields, #source_name, #value);)
    });
    let capacity = stored.len();
    quote! {
        let mut __fields = #krate::__private::serde_json::Map::with_capacity(#capacity);
        #(#inserts)*
        ::core::result::Result::Ok(#krate::__private::SourceRecord {
            id: ::core::clone::Clone::clone(&self.#id),
            fields: __fields,
        })
    }
}

/// The body of `from_source()`: every field by source name, the id from the record; a
/// defaulted field that is absent or `null` takes its default.
fn from_source(cont: &Container<'_>, entity: &str) -> TokenStream {
    let krate = &cont.attrs.krate;
    let inits = cont.fields.iter().map(|f| {
        let (fi, ty, source_name) = (f.ident, f.ty, &f.source_name);
        if f.attrs.id.is_some() {
            return quote!(#fi: __id);
        }
        if !f.is_stored() {
            let default = quote!(<#ty as ::core::default::Default>::default());
            return quote!(#fi: #default);
        }
        let read = match (&f.shape, f.optional) {
            (Shape::Link { .. }, true) => quote!(#krate::__private::optional_link_from_source),
            _ => quote!(#krate::__private::from_source::<#ty>),
        };
        let Some(default) = &f.default else {
            return quote!(#fi: #read(#entity, #source_name, __fields.remove(#source_name))?);
        };
        let default = match default {
            attr::FieldDefault::Trait => quote!(<#ty as ::core::default::Default>::default()),
            // Spanned by the path, so that a function of the wrong type is reported there.
            attr::FieldDefault::Path(path) => quote_spanned!(path.span()=> #path()),
        };
        quote! {
            #fi: match __fields.remove(#source_name) {
                ::core::option::Option::None
                | ::core::option::Option::Some(#krate::__private::serde_json::Value::Null) => #default,
                __value => #read(#entity, #source_name, __value)?,
            }
        }
    });
    quote! {
        let __id = record.id;
        #[allow(unused_mut)]
        let mut __fields = record.fields;
        ::core::result::Result::Ok(Self {
            #(#inits,)*
        })
    }
}
