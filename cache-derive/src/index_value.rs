//! Code generation for `#[derive(IndexValue)]`: an enum of unit variants is indexed by its
//! serde form (`"in_review"`), so index entries and query arguments agree with the JSON the
//! user already sees.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields};

use crate::internals::{Ctxt, attr};

/// Expands `#[derive(IndexValue)]`, or returns every error found in the input.
pub(crate) fn derive_index_value(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    match &input.data {
        Data::Enum(data) => {
            for variant in &data.variants {
                if !matches!(variant.fields, Fields::Unit) {
                    cx.error_spanned_by(
                        &variant.fields,
                        format!(
                            "`#[derive(IndexValue)]` needs unit variants: `{}` has fields, and only a plain name can be an index value",
                            variant.ident
                        ),
                    );
                }
            }
        }
        Data::Struct(data) => cx.error_spanned_by(
            data.struct_token,
            "`#[derive(IndexValue)]` is for enums of unit variants; implement `IndexValue` by hand for a struct",
        ),
        Data::Union(data) => cx.error_spanned_by(
            data.union_token,
            "`#[derive(IndexValue)]` is for enums of unit variants, not unions",
        ),
    }
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(
            &input.generics,
            "`#[derive(IndexValue)]` does not support generic enums",
        );
    }
    cx.check()?;

    let krate = attr::crate_path_lenient(&input.attrs);
    let ident = &input.ident;
    Ok(quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #krate::IndexValue for #ident {
                type Arg = Self;

                fn index_value(&self) -> ::core::option::Option<::std::string::String> {
                    #krate::__private::serde_index_value(self)
                }

                fn arg_value(arg: &Self) -> ::std::string::String {
                    #krate::__private::serde_index_value(arg).unwrap_or_default()
                }
            }
        };
    })
}
