//! `#[derive(Cacheable)]`, `#[derive(CacheView)]` and `#[derive(IndexValue)]` for model-cache.
//! Use them through `cache_core` (`use cache_core::Cacheable;`); the attributes are documented
//! in the book's "Models" chapter.
#![warn(missing_docs)]

mod expand;
mod index_value;
mod internals;
mod view;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `cache_core::Cacheable` for a struct with named fields.
///
/// Container: `#[cache(entity = "projects", source_table = "Projects", ttl = "8h",
/// tombstone_ttl = "6h", negative_ttl = "5m", rename_all = "camelCase", default, crate = "path")]`. Fields:
/// `#[cache(id)]`, `#[indexed]`, `#[indexed(normalize = "lowercase")]`, `#[sortable]`,
/// `#[cache(version)]`, `#[cache(source = "Field Name")]`, `#[cache(skip)]`,
/// `#[cache(default)]`, `#[cache(default = "path::to::fn")]`.
#[proc_macro_derive(Cacheable, attributes(cache, indexed, sortable))]
pub fn derive_cacheable(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive_cacheable(&input)
        .unwrap_or_else(|err| {
            let mut out = err.to_compile_error();
            out.extend(expand::placeholder(&input));
            out
        })
        .into()
}

/// Derives `cache_core::CacheView<Model>` for `#[cache(view_of = Model)]`, moving the model's
/// fields of the same names (`#[cache(skip)]` view fields are `Default::default()`).
#[proc_macro_derive(CacheView, attributes(cache))]
pub fn derive_cache_view(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    view::derive_cache_view(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Derives `cache_core::IndexValue` for an enum of unit variants, indexed by its serde form.
#[proc_macro_derive(IndexValue, attributes(cache))]
pub fn derive_index_value(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    index_value::derive_index_value(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
