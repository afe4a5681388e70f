//! Checks that the item under `#[traced_ffi]` is a test function the harness
//! can call: `fn name(pat: &mut Tracer)` returning nothing, `()` or a `Result`.
//!
//! Every problem is reported, each pointing at the offending tokens.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::spanned::Spanned;
use syn::{Error, FnArg, Ident, Item, ItemFn, ReturnType, Safety, Type, TypePath};

/// The accepted form, for error messages.
const ACCEPTED_FORM: &str = "`fn name(t: &mut Tracer)`";

/// The parts of a checked test function that the expansion needs.
#[derive(Clone)]
pub(crate) struct TestFn {
    /// The function's name.
    pub(crate) ident: Ident,
    /// Span of the parameter's type, for type errors about the argument.
    pub(crate) param_ty_span: Span,
    /// Span of the return type (or of the parameter list when there is
    /// none), for "does not implement `IntoTestResult`" errors.
    pub(crate) output_span: Span,
}

/// Collects several errors into one.
#[derive(Default)]
struct Errors(Option<Error>);

impl Errors {
    fn push(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        let err = Error::new_spanned(tokens, message);
        match &mut self.0 {
            Some(errors) => errors.combine(err),
            None => self.0 = Some(err),
        }
    }

    fn push_at(&mut self, span: Span, message: impl std::fmt::Display) {
        let err = Error::new(span, message);
        match &mut self.0 {
            Some(errors) => errors.combine(err),
            None => self.0 = Some(err),
        }
    }

    fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.0 {
            Some(errors) => Err(errors),
            None => Ok(value),
        }
    }
}

/// Parses `input` as an item and checks it is an acceptable test function.
pub(crate) fn check(input: TokenStream) -> syn::Result<TestFn> {
    match syn::parse2::<Item>(input)? {
        Item::Fn(item) => check_fn(&item),
        other => Err(Error::new_spanned(
            item_keyword_and_name(&other),
            format!("`#[traced_ffi]` can only be applied to a function {ACCEPTED_FORM}"),
        )),
    }
}

/// The tokens that say what kind of item this is (`struct Foo`, `impl`, ...),
/// where the "not a function" error points.
fn item_keyword_and_name(item: &Item) -> TokenStream {
    fn pair(keyword: &impl ToTokens, name: &impl ToTokens) -> TokenStream {
        quote!(#keyword #name)
    }
    match item {
        Item::Const(item) => pair(&item.const_token, &item.ident),
        Item::Enum(item) => pair(&item.enum_token, &item.ident),
        Item::ExternCrate(item) => pair(&item.extern_token, &item.ident),
        Item::ForeignMod(item) => item.abi.to_token_stream(),
        Item::Impl(item) => item.impl_token.to_token_stream(),
        Item::Macro(item) => item.mac.path.to_token_stream(),
        Item::Mod(item) => pair(&item.mod_token, &item.ident),
        Item::Static(item) => pair(&item.static_token, &item.ident),
        Item::Struct(item) => pair(&item.struct_token, &item.ident),
        Item::Trait(item) => pair(&item.trait_token, &item.ident),
        Item::TraitAlias(item) => pair(&item.trait_token, &item.ident),
        Item::Type(item) => pair(&item.type_token, &item.ident),
        Item::Union(item) => pair(&item.union_token, &item.ident),
        Item::Use(item) => item.use_token.to_token_stream(),
        other => other.to_token_stream(),
    }
}

/// Checks the signature of a function item; every problem is reported.
fn check_fn(item: &ItemFn) -> syn::Result<TestFn> {
    let sig = &item.sig;
    let mut errors = Errors::default();

    if let Some(default) = &item.modifiers.defaultness {
        errors.push(
            default,
            "a `#[traced_ffi]` test cannot be `default`, write a plain `fn`",
        );
    }
    if let Some(constness) = &sig.constness {
        errors.push(
            constness,
            "a `#[traced_ffi]` test cannot be `const`, write a plain `fn`",
        );
    }
    if let Some(asyncness) = &sig.asyncness {
        errors.push(
            asyncness,
            "a `#[traced_ffi]` test cannot be `async`, write a plain `fn`",
        );
    }
    match &sig.safety {
        Safety::Default => {}
        Safety::Unsafe(unsafety) => errors.push(
            unsafety,
            "a `#[traced_ffi]` test cannot be `unsafe`, write a plain `fn` and use `unsafe` blocks inside it",
        ),
        Safety::Safe(safe) => {
            errors.push(safe, "a `#[traced_ffi]` test cannot be `safe`, write a plain `fn`");
        }
    }
    if let Some(abi) = &sig.abi {
        errors.push(
            abi,
            format!(
                "a `#[traced_ffi]` test must use the Rust ABI, remove `{}`",
                abi.to_token_stream()
            ),
        );
    }

    let generics = &sig.generics;
    if generics.lt_token.is_some() || !generics.params.is_empty() {
        let (lt, params, gt) = (&generics.lt_token, &generics.params, &generics.gt_token);
        errors.push(
            quote!(#lt #params #gt),
            "a `#[traced_ffi]` test cannot have generic parameters",
        );
    }
    if let Some(where_clause) = &generics.where_clause {
        errors.push(
            where_clause,
            "a `#[traced_ffi]` test cannot have a `where` clause",
        );
    }

    let mut param_ty_span = sig.paren_token.span.join();
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        None => {
            if sig.variadic.is_none() {
                errors.push_at(
                    sig.paren_token.span.join(),
                    format!("a `#[traced_ffi]` test takes one parameter: {ACCEPTED_FORM}"),
                );
            }
        }
        Some(FnArg::Receiver(receiver)) => errors.push(
            receiver,
            format!("a `#[traced_ffi]` test cannot take `self`, it must be a free function {ACCEPTED_FORM}"),
        ),
        Some(FnArg::Typed(param)) => {
            param_ty_span = param.ty.span();
            if let Err((tokens, message)) = check_param_type(&param.ty) {
                errors.push(tokens, message);
            }
        }
    }
    let extra: Vec<&FnArg> = inputs.collect();
    if !extra.is_empty() {
        errors.push(
            quote!(#(#extra),*),
            format!("a `#[traced_ffi]` test takes only one parameter: {ACCEPTED_FORM}"),
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(
            variadic,
            format!(
                "a `#[traced_ffi]` test cannot be variadic, it takes one parameter: {ACCEPTED_FORM}"
            ),
        );
    }

    let output_span = match &sig.output {
        ReturnType::Default => sig.paren_token.span.join(),
        ReturnType::Type(_, ty) => {
            if !is_allowed_return_type(ty) {
                errors.push(
                    ty,
                    "a `#[traced_ffi]` test must return nothing, `()` or `Result<(), E>` with `E: Debug`",
                );
            }
            ty.span()
        }
    };

    errors.finish(TestFn {
        ident: sig.ident.clone(),
        param_ty_span,
        output_span,
    })
}

/// Looks through invisible groups (from `macro_rules!` `$t:ty`) and parentheses.
fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => peel(&group.elem),
        Type::Paren(paren) => peel(&paren.elem),
        other => other,
    }
}

/// Whether `ty` is a plain path (no `<T as Trait>::` qualifier) whose last
/// segment is `name`.
fn is_path_ending_in(ty: &Type, name: &str) -> bool {
    match peel(ty) {
        Type::Path(TypePath {
            qself: None, path, ..
        }) => path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == name),
        _ => false,
    }
}

/// `&mut Tracer`, `&mut path::to::Tracer` or `&'_ mut Tracer`; otherwise the
/// tokens to point at and the message.
fn check_param_type(ty: &Type) -> Result<(), (TokenStream, &'static str)> {
    const MESSAGE: &str = "the parameter of a `#[traced_ffi]` test must have type `&mut Tracer`";
    match peel(ty) {
        Type::Reference(reference)
            if reference.mutability.is_some() && is_path_ending_in(&reference.elem, "Tracer") =>
        {
            match &reference.lifetime {
                Some(lifetime) if lifetime.ident != "_" => Err((
                    lifetime.to_token_stream(),
                    "the parameter of a `#[traced_ffi]` test must have type `&mut Tracer`, without a named lifetime",
                )),
                _ => Ok(()),
            }
        }
        _ => Err((ty.to_token_stream(), MESSAGE)),
    }
}

/// `()` or a path ending in `Result` (whether it implements the harness's
/// `IntoTestResult` is left to the type checker).
fn is_allowed_return_type(ty: &Type) -> bool {
    match peel(ty) {
        Type::Tuple(tuple) => tuple.elems.is_empty(),
        other => is_path_ending_in(other, "Result"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn error_messages(input: TokenStream) -> Vec<String> {
        match check(input) {
            Ok(test_fn) => panic!("expected an error, `{}` was accepted", test_fn.ident),
            Err(err) => err.into_iter().map(|err| err.to_string()).collect(),
        }
    }

    fn assert_single_error(input: TokenStream, expected: &str) {
        assert_eq!(error_messages(input.clone()), [expected], "input: {input}");
    }

    #[test]
    fn plain_test_fn_is_accepted() {
        let test_fn = check(quote!(
            fn fill_writes(t: &mut Tracer) {
                let _ = t;
            }
        ))
        .unwrap();
        assert_eq!(test_fn.ident, "fill_writes");
    }

    #[test]
    fn attributes_visibility_and_any_pattern_are_accepted() {
        for input in [
            quote!(
                #[doc = "x"]
                pub fn a(_t: &mut Tracer) {}
            ),
            quote!(
                pub(crate) fn a(_: &mut Tracer) {}
            ),
            quote!(
                fn a(mut t: &mut Tracer) {}
            ),
            quote!(
                fn a(#[allow(unused)] t: &mut Tracer) {}
            ),
        ] {
            check(input.clone()).unwrap_or_else(|err| panic!("{input}: {err}"));
        }
    }

    #[test]
    fn tracer_may_be_named_by_any_path_and_elided_lifetime() {
        for input in [
            quote!(
                fn a(t: &mut traced_ffi::Tracer) {}
            ),
            quote!(
                fn a(t: &mut ::traced_ffi::Tracer) {}
            ),
            quote!(
                fn a(t: &'_ mut Tracer) {}
            ),
            quote!(
                fn a(t: &mut (Tracer)) {}
            ),
        ] {
            check(input.clone()).unwrap_or_else(|err| panic!("{input}: {err}"));
        }
    }

    #[test]
    fn unit_and_result_return_types_are_accepted() {
        for input in [
            quote!(
                fn a(t: &mut Tracer) -> () {}
            ),
            quote!(
                fn a(t: &mut Tracer) -> Result<(), String> {
                    Ok(())
                }
            ),
            quote!(
                fn a(t: &mut Tracer) -> std::result::Result<(), Box<dyn std::error::Error>> {
                    Ok(())
                }
            ),
            quote!(
                fn a(t: &mut Tracer) -> io::Result<()> {
                    Ok(())
                }
            ),
        ] {
            check(input.clone()).unwrap_or_else(|err| panic!("{input}: {err}"));
        }
    }

    #[test]
    fn raw_identifier_names_are_accepted() {
        let test_fn = check(quote!(
            fn r#type(t: &mut Tracer) {}
        ))
        .unwrap();
        assert_eq!(test_fn.ident, "r#type");
    }

    #[test]
    fn non_function_items_are_rejected() {
        let expected =
            "`#[traced_ffi]` can only be applied to a function `fn name(t: &mut Tracer)`";
        for input in [
            quote!(
                struct S;
            ),
            quote!(
                enum E {}
            ),
            quote!(
                const C: u8 = 0;
            ),
            quote!(
                static S: u8 = 0;
            ),
            quote!(
                mod m {}
            ),
            quote!(impl S {}),
            quote!(
                use std::fmt;
            ),
        ] {
            assert_single_error(input, expected);
        }
    }

    #[test]
    fn fn_qualifiers_are_rejected() {
        assert_single_error(
            quote!(
                async fn a(t: &mut Tracer) {}
            ),
            "a `#[traced_ffi]` test cannot be `async`, write a plain `fn`",
        );
        assert_single_error(
            quote!(
                const fn a(t: &mut Tracer) {}
            ),
            "a `#[traced_ffi]` test cannot be `const`, write a plain `fn`",
        );
        assert_single_error(
            quote!(
                unsafe fn a(t: &mut Tracer) {}
            ),
            "a `#[traced_ffi]` test cannot be `unsafe`, write a plain `fn` and use `unsafe` blocks inside it",
        );
        assert_single_error(
            quote!(
                extern "C" fn a(t: &mut Tracer) {}
            ),
            "a `#[traced_ffi]` test must use the Rust ABI, remove `extern \"C\"`",
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let messages = error_messages(quote!(
            const async unsafe extern "C" fn a<T>(x: u8, y: u8) -> u8
            where
                T: Copy,
            {
                0
            }
        ));
        assert_eq!(messages.len(), 9, "{messages:#?}");
    }

    #[test]
    fn generics_and_where_clauses_are_rejected() {
        let generic = "a `#[traced_ffi]` test cannot have generic parameters";
        assert_single_error(
            quote!(
                fn a<T>(t: &mut Tracer) {}
            ),
            generic,
        );
        assert_single_error(
            quote!(
                fn a<'a>(t: &mut Tracer) {}
            ),
            generic,
        );
        assert_single_error(
            quote!(
                fn a<const N: usize>(t: &mut Tracer) {}
            ),
            generic,
        );
        // Written as a string: rustfmt would drop the empty `<>` in `quote!`.
        let empty_generics: TokenStream = "fn a<>(t: &mut Tracer) {}".parse().unwrap();
        assert_single_error(empty_generics, generic);
        assert_single_error(
            quote!(
                fn a(t: &mut Tracer)
                where
                    u8: Copy,
                {
                }
            ),
            "a `#[traced_ffi]` test cannot have a `where` clause",
        );
    }

    #[test]
    fn wrong_parameter_count_is_rejected() {
        assert_single_error(
            quote!(
                fn a() {}
            ),
            "a `#[traced_ffi]` test takes one parameter: `fn name(t: &mut Tracer)`",
        );
        assert_single_error(
            quote!(
                fn a(t: &mut Tracer, u: u8, v: u8) {}
            ),
            "a `#[traced_ffi]` test takes only one parameter: `fn name(t: &mut Tracer)`",
        );
    }

    #[test]
    fn self_parameter_is_rejected() {
        for input in [
            quote!(
                fn a(&mut self) {}
            ),
            quote!(
                fn a(self) {}
            ),
            quote!(
                fn a(self: Box<Self>) {}
            ),
        ] {
            assert_single_error(
                input,
                "a `#[traced_ffi]` test cannot take `self`, it must be a free function `fn name(t: &mut Tracer)`",
            );
        }
    }

    #[test]
    fn wrong_parameter_types_are_rejected() {
        for input in [
            quote!(
                fn a(t: &Tracer) {}
            ),
            quote!(
                fn a(t: Tracer) {}
            ),
            quote!(
                fn a(t: &mut Tracer2) {}
            ),
            quote!(
                fn a(t: &mut <X as Y>::Tracer) {}
            ),
            quote!(
                fn a(t: *mut Tracer) {}
            ),
            quote!(
                fn a(t: &mut &mut Tracer) {}
            ),
        ] {
            assert_single_error(
                input,
                "the parameter of a `#[traced_ffi]` test must have type `&mut Tracer`",
            );
        }
        assert_single_error(
            quote!(
                fn a(t: &'static mut Tracer) {}
            ),
            "the parameter of a `#[traced_ffi]` test must have type `&mut Tracer`, without a named lifetime",
        );
    }

    #[test]
    fn other_return_types_are_rejected() {
        for input in [
            quote!(
                fn a(t: &mut Tracer) -> u8 {
                    0
                }
            ),
            quote!(
                fn a(t: &mut Tracer) -> (u8,) {
                    (0,)
                }
            ),
            quote!(
                fn a(t: &mut Tracer) -> ! {
                    loop {}
                }
            ),
            quote!(
                fn a(t: &mut Tracer) -> impl Sized {}
            ),
            quote!(
                fn a(t: &mut Tracer) -> Option<()> {
                    None
                }
            ),
        ] {
            assert_single_error(
                input,
                "a `#[traced_ffi]` test must return nothing, `()` or `Result<(), E>` with `E: Debug`",
            );
        }
    }

    #[test]
    fn variadic_is_rejected() {
        assert_single_error(
            quote!(
                fn a(t: &mut Tracer, ...) {}
            ),
            "a `#[traced_ffi]` test cannot be variadic, it takes one parameter: `fn name(t: &mut Tracer)`",
        );
        assert_single_error(
            quote!(
                fn a(...) {}
            ),
            "a `#[traced_ffi]` test cannot be variadic, it takes one parameter: `fn name(t: &mut Tracer)`",
        );
    }
}
