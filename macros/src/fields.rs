//! `#[derive(Fields)]`: the field layout of a `#[repr(C)]` struct, so traces
//! and contract messages name fields (`cfg.level`) and a test can ask which
//! fields and padding native code never wrote.
//!
//! For `#[repr(C)] struct Cfg { level: u32, #[fields(nested)] inner: Inner }`
//! the output is
//!
//! ```text
//! unsafe impl ::traced_ffi::Fields for Cfg {
//!     fn fields() -> Vec<::traced_ffi::Field> {
//!         let mut fields = Vec::new();
//!         ::traced_ffi::__private::push_field(&mut fields, "level",
//!             ::core::mem::offset_of!(Cfg, level), ::core::mem::size_of::<u32>(),
//!             <u32 as ::traced_ffi::Fields>::fields());
//!         ...
//!         fields
//!     }
//! }
//! ```
//!
//! A field whose type has fields of its own (a struct that derives `Fields`)
//! is flattened as `inner.a`, `inner.b`; any other field is one named range.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Error, Fields as SynFields, LitStr, Path};

/// The whole expansion of `#[derive(Fields)]` on `input`.
pub(crate) fn derive(input: TokenStream) -> TokenStream {
    match expand(input) {
        Ok(tokens) => tokens,
        Err(errors) => errors.into_compile_error(),
    }
}

fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(input)?;
    let krate = krate(&input)?;
    let mut errors: Option<Error> = None;
    let mut push = |e: Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    if !is_repr_c(&input) {
        push(Error::new_spanned(
            &input.ident,
            "derive(Fields) needs `#[repr(C)]` (or `#[repr(C, packed)]`): the layout of other structs is not fixed",
        ));
    }
    if !input.generics.params.is_empty() {
        push(Error::new_spanned(
            &input.generics,
            "derive(Fields) takes structs without generic parameters",
        ));
    }
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            SynFields::Named(named) => Some(named.named.iter().collect::<Vec<_>>()),
            other => {
                push(Error::new_spanned(
                    other,
                    "derive(Fields) takes structs with named fields",
                ));
                None
            }
        },
        Data::Enum(e) => {
            push(Error::new_spanned(
                e.enum_token,
                "derive(Fields) takes structs, not enums",
            ));
            None
        }
        Data::Union(u) => {
            push(Error::new_spanned(
                u.union_token,
                "derive(Fields) takes structs, not unions",
            ));
            None
        }
    };
    if let Some(e) = errors {
        return Err(e);
    }
    let ident = &input.ident;
    let pushes = fields.unwrap_or_default().into_iter().map(|f| {
        let name = f.ident.as_ref().map(|i| {
            let text = i.to_string();
            LitStr::new(text.strip_prefix("r#").unwrap_or(&text), i.span())
        });
        let field = &f.ident;
        let ty = &f.ty;
        quote! {
            #krate::__private::push_field(
                &mut fields,
                #name,
                ::core::mem::offset_of!(#ident, #field),
                ::core::mem::size_of::<#ty>(),
                <#ty as #krate::Fields>::fields(),
            );
        }
    });
    Ok(quote! {
        // SAFETY: every field's type implements the unsafe trait too (the
        // calls below require it): every bit pattern is a valid value.
        unsafe impl #krate::Fields for #ident {
            fn fields() -> ::std::vec::Vec<#krate::Field> {
                let mut fields = ::std::vec::Vec::new();
                #(#pushes)*
                fields
            }
        }
    })
}

/// True if the struct has `#[repr(C)]` (possibly with `packed` or `align`).
fn is_repr_c(input: &DeriveInput) -> bool {
    input.attrs.iter().any(|a| {
        a.path().is_ident("repr") && {
            let mut c = false;
            let _ = a.parse_nested_meta(|m| {
                if m.path.is_ident("C") {
                    c = true;
                }
                if m.input.peek(syn::token::Paren) {
                    let _ = m.input.parse::<TokenStream>();
                }
                Ok(())
            });
            c
        }
    })
}

/// `#[fields(crate = path)]`, or `::traced_ffi`.
fn krate(input: &DeriveInput) -> syn::Result<Path> {
    let mut krate: Path = syn::parse_quote!(::traced_ffi);
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("fields")) {
        attr.parse_nested_meta(|m| {
            if m.path.is_ident("crate") {
                krate = m.value()?.parse()?;
                Ok(())
            } else {
                Err(m.error("unknown option of #[fields]; the only one is `crate = path`"))
            }
        })?;
    }
    Ok(krate)
}
