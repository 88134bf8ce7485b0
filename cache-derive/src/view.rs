//! Code generation for `#[derive(CacheView)]`: a view is built by moving the model's fields of
//! the same name.
//!
//! Each field is moved with the span of the view's field, so that rustc's own errors ("no
//! field `x` on type `PrivateEvent`", "mismatched types") point at the view field that is
//! wrong, and name it.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::{DeriveInput, spanned::Spanned as _};

use crate::internals::{
    Ctxt,
    ast::struct_fields,
    attr::{ViewContainer, ViewField},
};

/// Expands `#[derive(CacheView)]`, or returns every error found in the input.
pub(crate) fn derive_cache_view(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let attrs = ViewContainer::from_ast(&cx, &input.attrs);
    let fields = struct_fields(&cx, input, "CacheView");
    if attrs.view_of.is_none() {
        cx.error_spanned_by(
            &input.ident,
            format!(
                "missing `#[cache(view_of = Model)]`: name the cached model `{}` is a view of",
                input.ident
            ),
        );
    }
    let field_attrs: Vec<ViewField> = fields
        .into_iter()
        .flatten()
        .map(|f| ViewField::from_ast(&cx, &f.attrs))
        .collect();
    cx.check()?;
    let (Some(model), Some(fields)) = (attrs.view_of, fields) else {
        return Err(syn::Error::new_spanned(&input.ident, "`#[derive(CacheView)]` failed"));
    };

    let krate = &attrs.krate;
    let ident = &input.ident;
    let inits = fields.iter().zip(&field_attrs).map(|(field, attrs)| {
        let fi = &field.ident;
        let ty = &field.ty;
        if attrs.skip.is_some() {
            return quote_spanned!(ty.span()=> #fi: <#ty as ::core::default::Default>::default());
        }
        // `let` with the view's type makes a type mismatch an error on this field alone.
        quote_spanned! {field.span()=>
            #fi: {
                let __value: #ty = __model.#fi;
                __value
            }
        }
    });
    Ok(quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #krate::CacheView<#model> for #ident {
                fn from_model(__model: #model) -> Self {
                    Self {
                        #(#inits,)*
                    }
                }
            }
        };
    })
}
