//! Turns a checked test function into its registration in the harness's
//! link-time test list.
//!
//! For `fn fill_writes(t: &mut Tracer) { ... }` the output is the function,
//! unchanged, followed by
//!
//! ```text
//! const _: () = {
//!     #[KRATE::__private::linkme::distributed_slice(KRATE::__private::TESTS)]
//!     #[linkme(crate = KRATE::__private::linkme)]
//!     static __TRACED_FFI_TEST: KRATE::__private::TestDesc = KRATE::__private::TestDesc {
//!         name: "fill_writes",
//!         module_path: ::core::module_path!(),
//!         file: ::core::file!(),
//!         line: ::core::line!(),          // spanned at the fn's name
//!         ignore: false,
//!         should_panic: KRATE::__private::ShouldPanic::No,
//!         timeout: ::core::option::Option::None, // Some(Duration::from_millis(ms)) for `timeout = "…"`
//!         run: |__tracer| {
//!             let __result = fill_writes(__tracer);
//!             KRATE::__private::IntoTestResult::into_test_result(__result)
//!         },
//!     };
//! };
//! ```
//!
//! where `KRATE` is `::traced_ffi` or the `crate = path` option. The anonymous
//! `const` block keeps the static's name out of the user's module, so no name
//! can clash and no naming lint fires. When anything is wrong, the output is
//! the function, unchanged, followed by one `compile_error!` per problem and
//! no registration: the function still exists, so the user sees only the
//! errors that matter.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::{Ident, LitStr};

use crate::options::{Ignore, Options, ShouldPanic};
use crate::signature::{self, TestFn};

/// The whole expansion of `#[traced_ffi(args)] input`.
pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    match parse(args, input.clone()) {
        Ok((options, test_fn)) => {
            let registration = registration(&options, &test_fn);
            quote!(#input #registration)
        }
        Err(errors) => {
            let errors = errors.into_compile_error();
            quote!(#input #errors)
        }
    }
}

/// Parses and checks the attribute's arguments and the function; all errors
/// of both are combined.
fn parse(args: TokenStream, input: TokenStream) -> syn::Result<(Options, TestFn)> {
    match (syn::parse2::<Options>(args), signature::check(input)) {
        (Ok(options), Ok(test_fn)) => Ok((options, test_fn)),
        (Err(mut errors), Err(more)) => {
            errors.combine(more);
            Err(errors)
        }
        (Err(errors), Ok(_)) | (Ok(_), Err(errors)) => Err(errors),
    }
}

/// The `const _` block that adds the test to `KRATE::__private::TESTS`.
fn registration(options: &Options, test_fn: &TestFn) -> TokenStream {
    let krate = &options.krate;
    let ident = &test_fn.ident;
    let name = LitStr::new(&ident.unraw().to_string(), ident.span());
    // `line!()` spanned at the name reports the line of the name, not of the
    // attribute.
    let line = quote_spanned!(ident.span()=> ::core::line!());
    let ignore = match options.ignore {
        Ignore::No => quote!(false),
        Ignore::Yes => quote!(true),
    };
    let should_panic = match &options.should_panic {
        ShouldPanic::No => quote!(#krate::__private::ShouldPanic::No),
        ShouldPanic::Yes => quote!(#krate::__private::ShouldPanic::Yes),
        ShouldPanic::WithMessage(text) => {
            quote!(#krate::__private::ShouldPanic::WithMessage(#text))
        }
    };
    let timeout = match options.timeout_ms {
        None => quote!(::core::option::Option::None),
        Some(ms) => quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms))),
    };
    // The locals are hygienic, so a test function or parameter named like
    // them still resolves to the user's item. Where a local is used as an
    // argument it is located at the parameter's type or at the return type,
    // so "mismatched types" and "`E` doesn't implement `Debug`" point there
    // instead of at the attribute.
    let tracer = Ident::new("__tracer", Span::mixed_site());
    let tracer_arg = Ident::new(
        "__tracer",
        Span::mixed_site().located_at(test_fn.param_ty_span),
    );
    let result = Ident::new("__result", Span::mixed_site());
    let result_arg = Ident::new(
        "__result",
        Span::mixed_site().located_at(test_fn.output_span),
    );

    quote! {
        const _: () = {
            #[#krate::__private::linkme::distributed_slice(#krate::__private::TESTS)]
            #[linkme(crate = #krate::__private::linkme)]
            static __TRACED_FFI_TEST: #krate::__private::TestDesc = #krate::__private::TestDesc {
                name: #name,
                module_path: ::core::module_path!(),
                file: ::core::file!(),
                line: #line,
                ignore: #ignore,
                should_panic: #should_panic,
                timeout: #timeout,
                run: |#tracer| {
                    let #result = #ident(#tracer_arg);
                    #krate::__private::IntoTestResult::into_test_result(#result_arg)
                },
            };
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    /// Token strings are compared with whitespace removed, so the expected
    /// code can be written naturally.
    fn squash(tokens: impl ToString) -> String {
        tokens.to_string().split_whitespace().collect()
    }

    fn expand_str(args: TokenStream, input: TokenStream) -> String {
        squash(expand(args, input))
    }

    #[test]
    fn plain_test_expands_to_the_fn_and_its_registration() {
        let input = quote!(
            /// Docs.
            #[inline(never)]
            pub fn fill_writes(t: &mut Tracer) {
                let _ = t;
            }
        );
        let expected = quote! {
            /// Docs.
            #[inline(never)]
            pub fn fill_writes(t: &mut Tracer) { let _ = t; }

            const _: () = {
                #[::traced_ffi::__private::linkme::distributed_slice(::traced_ffi::__private::TESTS)]
                #[linkme(crate = ::traced_ffi::__private::linkme)]
                static __TRACED_FFI_TEST: ::traced_ffi::__private::TestDesc = ::traced_ffi::__private::TestDesc {
                    name: "fill_writes",
                    module_path: ::core::module_path!(),
                    file: ::core::file!(),
                    line: ::core::line!(),
                    ignore: false,
                    should_panic: ::traced_ffi::__private::ShouldPanic::No,
                    timeout: ::core::option::Option::None,
                    run: |__tracer| {
                        let __result = fill_writes(__tracer);
                        ::traced_ffi::__private::IntoTestResult::into_test_result(__result)
                    },
                };
            };
        };
        assert_eq!(expand_str(quote!(), input), squash(expected));
    }

    #[test]
    fn options_are_carried_into_the_test_desc() {
        let out = expand_str(
            quote!(ignore, should_panic(expected = "boom")),
            quote!(
                fn a(t: &mut Tracer) {}
            ),
        );
        assert!(out.contains("ignore:true,"), "{out}");
        assert!(
            out.contains(
                r#"should_panic:::traced_ffi::__private::ShouldPanic::WithMessage("boom"),"#
            ),
            "{out}"
        );

        let out = expand_str(
            quote!(should_panic),
            quote!(
                fn a(t: &mut Tracer) {}
            ),
        );
        assert!(out.contains("ignore:false,"), "{out}");
        assert!(
            out.contains("should_panic:::traced_ffi::__private::ShouldPanic::Yes,"),
            "{out}"
        );
    }

    #[test]
    fn crate_option_replaces_every_generated_path() {
        let out = expand_str(
            quote!(crate = my::tf),
            quote!(
                fn a(t: &mut Tracer) -> Result<(), String> {
                    Ok(())
                }
            ),
        );
        assert!(!out.contains("traced_ffi::__private"), "{out}");
        for path in [
            "#[my::tf::__private::linkme::distributed_slice(my::tf::__private::TESTS)]",
            "#[linkme(crate=my::tf::__private::linkme)]",
            "my::tf::__private::TestDesc{",
            "my::tf::__private::ShouldPanic::No",
            "my::tf::__private::IntoTestResult::into_test_result(__result)",
        ] {
            assert!(out.contains(path), "{path} not in {out}");
        }
    }

    #[test]
    fn raw_identifier_is_named_without_its_prefix() {
        let out = expand_str(
            quote!(),
            quote!(
                fn r#type(t: &mut Tracer) {}
            ),
        );
        assert!(out.contains(r#"name:"type","#), "{out}");
        assert!(out.contains("=r#type(__tracer);"), "{out}");
    }

    #[test]
    fn errors_keep_the_original_fn_and_emit_no_registration() {
        let input = quote!(
            async fn a(t: &mut Tracer) {}
        );
        let out = expand_str(quote!(), input.clone());
        assert!(out.starts_with(&squash(&input)), "{out}");
        assert!(out.contains("compile_error!"), "{out}");
        assert!(!out.contains("TestDesc"), "{out}");
    }

    #[test]
    fn option_and_signature_errors_are_reported_together() {
        let Err(err) = parse(
            quote!(bogus),
            quote!(
                fn a() {}
            ),
        ) else {
            panic!("expected errors");
        };
        let messages: Vec<String> = err.into_iter().map(|err| err.to_string()).collect();
        assert_eq!(messages.len(), 2, "{messages:#?}");
        assert!(
            messages[0].starts_with("unknown option `bogus`"),
            "{messages:#?}"
        );
        assert!(messages[1].contains("takes one parameter"), "{messages:#?}");
    }

    #[test]
    fn non_fn_item_is_emitted_unchanged_with_the_error() {
        let input = quote!(
            struct S;
        );
        let out = expand(quote!(), input.clone()).to_string();
        assert!(out.starts_with(&input.to_string()), "{out}");
        assert!(out.contains("can only be applied to a function"), "{out}");
    }
}
