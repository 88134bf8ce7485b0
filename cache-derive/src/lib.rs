//! `#[derive(Cacheable)]`, `#[derive(CacheView)]` and `#[derive(IndexValue)]` for model-cache.
//! Use them through `cache_core` (`use cache_core::Cacheable;`).

use proc_macro::TokenStream;

/// Derives `cache_core::Cacheable`.
#[proc_macro_derive(Cacheable, attributes(cache, indexed, sortable))]
pub fn derive_cacheable(input: TokenStream) -> TokenStream {
    let _ = input;
    TokenStream::new()
}

/// Derives `cache_core::CacheView`.
#[proc_macro_derive(CacheView, attributes(cache))]
pub fn derive_cache_view(input: TokenStream) -> TokenStream {
    let _ = input;
    TokenStream::new()
}

/// Derives `cache_core::IndexValue` for an enum of unit variants.
#[proc_macro_derive(IndexValue)]
pub fn derive_index_value(input: TokenStream) -> TokenStream {
    let _ = input;
    TokenStream::new()
}
