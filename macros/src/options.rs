//! The arguments of the attribute: `#[traced_ffi(ignore, should_panic(expected = "text"), timeout = "10s", crate = path)]`.
//!
//! Parsing happens in two steps so that every mistake in the list is reported
//! at once: [`RawOption`]s are split off syntactically (any identifier, then
//! nothing, a parenthesized group, or `= tokens`), then [`Options::from_raw`]
//! checks each one and combines the errors.

use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Error, Ident, LitStr, MacroDelimiter, MetaList, Path, Token, token};

/// The forms the attribute accepts, for error messages.
const ALLOWED_OPTIONS: &str = "`ignore`, `should_panic`, `should_panic(expected = \"text\")`, \
     `timeout = \"10s\"` or `crate = path`";

/// Error message for a malformed `should_panic`.
const SHOULD_PANIC_FORMS: &str = "expected `should_panic` or `should_panic(expected = \"text\")`";

/// Error message for a malformed `crate`.
const CRATE_FORM: &str = "expected `crate = path`, the path under which the `traced_ffi` crate is found (e.g. `crate = ::traced_ffi`)";

/// Error message for a malformed `timeout`.
const TIMEOUT_FORM: &str = "expected `timeout = \"<number><unit>\"` with a number above zero and a unit of `ms`, `s`, `m` or `h`, e.g. `timeout = \"10s\"`";

/// The crate path used when no `crate = path` option is given.
fn default_crate_path() -> Path {
    syn::parse_quote!(::traced_ffi)
}

/// What the test expects of panics (mirrors `traced_ffi::__private::ShouldPanic`).
#[derive(Clone)]
pub(crate) enum ShouldPanic {
    /// No `should_panic` option.
    No,
    /// `should_panic`.
    Yes,
    /// `should_panic(expected = "text")`.
    WithMessage(LitStr),
}

/// Whether the test is marked `ignore`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ignore {
    /// No `ignore` option: the test runs by default.
    No,
    /// `ignore`: the test runs only with `--ignored` / `--include-ignored`.
    Yes,
}

/// The checked arguments of one `#[traced_ffi(...)]`.
#[derive(Clone)]
pub(crate) struct Options {
    /// `ignore`.
    pub(crate) ignore: Ignore,
    /// `should_panic` / `should_panic(expected = "text")`.
    pub(crate) should_panic: ShouldPanic,
    /// `timeout = "10s"`, in milliseconds.
    pub(crate) timeout_ms: Option<u64>,
    /// `crate = path`, or `::traced_ffi`.
    pub(crate) krate: Path,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ignore: Ignore::No,
            should_panic: ShouldPanic::No,
            timeout_ms: None,
            krate: default_crate_path(),
        }
    }
}

/// What follows an option's name.
enum RawValue {
    /// Nothing: `ignore`.
    None,
    /// A parenthesized group: `should_panic(expected = "text")`.
    List(Group),
    /// `= tokens` up to the next top-level comma: `crate = ::traced_ffi`.
    NameValue {
        eq_token: Token![=],
        value: TokenStream,
    },
}

/// One option as written, before it is checked.
struct RawOption {
    name: Ident,
    value: RawValue,
}

impl RawValue {
    /// The value's tokens, `=` included, for pointing errors at them.
    fn to_spanned_tokens(&self) -> TokenStream {
        match self {
            RawValue::None => TokenStream::new(),
            RawValue::List(group) => group.to_token_stream(),
            RawValue::NameValue { eq_token, value } => quote!(#eq_token #value),
        }
    }
}

impl Parse for RawOption {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let name = input.call(Ident::parse_any).map_err(|err| {
            Error::new(err.span(), format!("expected an option: {ALLOWED_OPTIONS}"))
        })?;
        let value = if input.peek(token::Paren) {
            match input.parse::<TokenTree>()? {
                TokenTree::Group(group) if group.delimiter() == Delimiter::Parenthesis => {
                    RawValue::List(group)
                }
                other => return Err(Error::new_spanned(other, "expected `(`")),
            }
        } else if input.peek(Token![=]) {
            let eq_token = input.parse()?;
            let mut value = TokenStream::new();
            while !input.is_empty() && !input.peek(Token![,]) {
                value.extend([input.parse::<TokenTree>()?]);
            }
            RawValue::NameValue { eq_token, value }
        } else {
            RawValue::None
        };
        if !input.is_empty() && !input.peek(Token![,]) {
            return Err(input.error("expected `,` between options"));
        }
        Ok(RawOption { name, value })
    }
}

impl Parse for Options {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let raw = Punctuated::<RawOption, Token![,]>::parse_terminated(input)?;
        Options::from_raw(raw)
    }
}

impl Options {
    /// Checks each option; all errors are combined into one.
    fn from_raw(raw: impl IntoIterator<Item = RawOption>) -> syn::Result<Self> {
        let mut options = Options::default();
        let mut seen: Vec<String> = Vec::new();
        let mut errors: Option<Error> = None;
        let mut push_error = |err: Error| match &mut errors {
            Some(errors) => errors.combine(err),
            None => errors = Some(err),
        };

        for option in raw {
            let name = option.name.unraw().to_string();
            if !matches!(
                name.as_str(),
                "ignore" | "should_panic" | "timeout" | "crate"
            ) {
                push_error(Error::new_spanned(
                    &option.name,
                    format!("unknown option `{name}`, expected {ALLOWED_OPTIONS}"),
                ));
                continue;
            }
            if seen.contains(&name) {
                push_error(Error::new_spanned(
                    &option.name,
                    format!("duplicate option `{name}`, each option may be given only once"),
                ));
                continue;
            }
            seen.push(name.clone());

            let checked = match name.as_str() {
                "ignore" => check_ignore(&option).map(|ignore| options.ignore = ignore),
                "should_panic" => check_should_panic(&option)
                    .map(|should_panic| options.should_panic = should_panic),
                "timeout" => check_timeout(&option).map(|ms| options.timeout_ms = Some(ms)),
                _ => check_crate(&option).map(|krate| options.krate = krate),
            };
            if let Err(err) = checked {
                push_error(err);
            }
        }

        match errors {
            Some(errors) => Err(errors),
            None => Ok(options),
        }
    }
}

/// `ignore` takes no value.
fn check_ignore(option: &RawOption) -> syn::Result<Ignore> {
    match &option.value {
        RawValue::None => Ok(Ignore::Yes),
        value => Err(Error::new_spanned(
            value.to_spanned_tokens(),
            "`ignore` takes no value, write `ignore`",
        )),
    }
}

/// `should_panic` or `should_panic(expected = "text")`.
fn check_should_panic(option: &RawOption) -> syn::Result<ShouldPanic> {
    match &option.value {
        RawValue::None => Ok(ShouldPanic::Yes),
        RawValue::List(group) => {
            // Parsing through a `MetaList` makes "unexpected end of input"
            // point at the closing parenthesis instead of the whole attribute.
            let list = MetaList {
                path: option.name.clone().into(),
                delimiter: MacroDelimiter::Paren(token::Paren {
                    span: group.delim_span(),
                }),
                tokens: group.stream(),
            };
            list.parse_args_with(parse_expected)
                .map(ShouldPanic::WithMessage)
        }
        value @ RawValue::NameValue { .. } => Err(Error::new_spanned(
            value.to_spanned_tokens(),
            SHOULD_PANIC_FORMS,
        )),
    }
}

/// The inside of `should_panic(...)`: exactly `expected = "text"`.
fn parse_expected(input: ParseStream) -> syn::Result<LitStr> {
    let with_forms = |err: Error| Error::new(err.span(), SHOULD_PANIC_FORMS);
    let key = input.call(Ident::parse_any).map_err(with_forms)?;
    if key != "expected" {
        return Err(Error::new_spanned(key, SHOULD_PANIC_FORMS));
    }
    input.parse::<Token![=]>().map_err(with_forms)?;
    let text = input.parse::<LitStr>().map_err(with_forms)?;
    if !text.suffix().is_empty() {
        return Err(Error::new_spanned(text, SHOULD_PANIC_FORMS));
    }
    if !input.is_empty() {
        return Err(input.error(SHOULD_PANIC_FORMS));
    }
    Ok(text)
}

/// `timeout = "10s"`: a string literal holding a duration (see
/// [`parse_duration_ms`]).
fn check_timeout(option: &RawOption) -> syn::Result<u64> {
    match &option.value {
        RawValue::None => Err(Error::new_spanned(&option.name, TIMEOUT_FORM)),
        RawValue::List(group) => Err(Error::new_spanned(group, TIMEOUT_FORM)),
        RawValue::NameValue { eq_token, value } => {
            if value.is_empty() {
                return Err(Error::new_spanned(eq_token, TIMEOUT_FORM));
            }
            let text: LitStr =
                syn::parse2(value.clone()).map_err(|_| Error::new_spanned(value, TIMEOUT_FORM))?;
            if !text.suffix().is_empty() {
                return Err(Error::new_spanned(&text, TIMEOUT_FORM));
            }
            parse_duration_ms(&text.value()).ok_or_else(|| Error::new_spanned(&text, TIMEOUT_FORM))
        }
    }
}

/// `"<number><unit>"` with a unit of `ms`, `s`, `m` or `h`, in milliseconds;
/// `None` if malformed, zero or too large. The same grammar as
/// `TRACED_FFI_TIMEOUT` (`traced_ffi`'s `timeout.rs`, which cannot share this
/// code: a proc-macro crate exports only macros).
fn parse_duration_ms(text: &str) -> Option<u64> {
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(scale).filter(|&ms| ms > 0)
}

/// `crate = path`, where `path` is a module-style path (`::traced_ffi`,
/// `crate::reexported::traced_ffi`).
fn check_crate(option: &RawOption) -> syn::Result<Path> {
    match &option.value {
        RawValue::None => Err(Error::new_spanned(&option.name, CRATE_FORM)),
        RawValue::List(group) => Err(Error::new_spanned(group, CRATE_FORM)),
        RawValue::NameValue { eq_token, value } => {
            if value.is_empty() {
                return Err(Error::new_spanned(eq_token, CRATE_FORM));
            }
            syn::parse::Parser::parse2(parse_whole_mod_style_path, value.clone())
                .map_err(|_| Error::new_spanned(value, CRATE_FORM))
        }
    }
}

/// A module-style path and nothing after it.
fn parse_whole_mod_style_path(input: ParseStream) -> syn::Result<Path> {
    let path = input.call(Path::parse_mod_style)?;
    if !input.is_empty() {
        return Err(input.error("unexpected tokens after the path"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse(args: TokenStream) -> syn::Result<Options> {
        syn::parse2::<Options>(args)
    }

    fn error_messages(args: TokenStream) -> Vec<String> {
        match parse(args) {
            Ok(_) => panic!("expected an error"),
            Err(err) => err.into_iter().map(|err| err.to_string()).collect(),
        }
    }

    fn path_string(path: &Path) -> String {
        path.to_token_stream().to_string()
    }

    #[test]
    fn no_arguments_give_the_defaults() {
        let options = parse(quote!()).unwrap();
        assert_eq!(options.ignore, Ignore::No);
        assert!(matches!(options.should_panic, ShouldPanic::No));
        assert_eq!(path_string(&options.krate), ":: traced_ffi");
    }

    #[test]
    fn ignore_sets_ignore() {
        assert_eq!(parse(quote!(ignore)).unwrap().ignore, Ignore::Yes);
    }

    #[test]
    fn bare_should_panic_expects_any_panic() {
        assert!(matches!(
            parse(quote!(should_panic)).unwrap().should_panic,
            ShouldPanic::Yes
        ));
    }

    #[test]
    fn should_panic_expected_keeps_the_literal() {
        let options = parse(quote!(should_panic(expected = "boom"))).unwrap();
        match options.should_panic {
            ShouldPanic::WithMessage(text) => assert_eq!(text.value(), "boom"),
            ShouldPanic::No | ShouldPanic::Yes => panic!("expected WithMessage"),
        }
    }

    #[test]
    fn crate_option_replaces_the_path() {
        let options = parse(quote!(crate = crate::reexport::traced_ffi)).unwrap();
        assert_eq!(
            path_string(&options.krate),
            "crate :: reexport :: traced_ffi"
        );
    }

    #[test]
    fn options_combine_with_commas_and_allow_a_trailing_comma() {
        let options = parse(quote!(ignore, should_panic, crate = ::tf,)).unwrap();
        assert_eq!(options.ignore, Ignore::Yes);
        assert!(matches!(options.should_panic, ShouldPanic::Yes));
        assert_eq!(path_string(&options.krate), ":: tf");
    }

    #[test]
    fn unknown_option_is_rejected_and_lists_the_allowed_ones() {
        assert_eq!(
            error_messages(quote!(ignored)),
            [format!(
                "unknown option `ignored`, expected {ALLOWED_OPTIONS}"
            )]
        );
    }

    #[test]
    fn repeated_option_is_rejected() {
        assert_eq!(
            error_messages(quote!(ignore, should_panic, ignore)),
            ["duplicate option `ignore`, each option may be given only once"]
        );
    }

    #[test]
    fn all_bad_options_are_reported_together() {
        assert_eq!(error_messages(quote!(foo, ignore = "why", bar)).len(), 3,);
    }

    #[test]
    fn ignore_with_a_value_is_rejected() {
        assert_eq!(
            error_messages(quote!(ignore = "slow")),
            ["`ignore` takes no value, write `ignore`"]
        );
        assert_eq!(
            error_messages(quote!(ignore(slow))),
            ["`ignore` takes no value, write `ignore`"]
        );
    }

    #[test]
    fn should_panic_name_value_form_is_rejected() {
        assert_eq!(
            error_messages(quote!(should_panic = "boom")),
            [SHOULD_PANIC_FORMS]
        );
    }

    #[test]
    fn malformed_should_panic_arguments_are_rejected() {
        for args in [
            quote!(should_panic()),
            quote!(should_panic(expected)),
            quote!(should_panic(expected =)),
            quote!(should_panic(expected = 1)),
            quote!(should_panic(expected = b"boom")),
            quote!(should_panic(message = "boom")),
            quote!(should_panic("boom")),
            quote!(should_panic(expected = "boom", extra)),
            quote!(should_panic(expected = "boom"suffix)),
        ] {
            assert_eq!(error_messages(args.clone()), [SHOULD_PANIC_FORMS], "{args}");
        }
    }

    #[test]
    fn timeout_takes_a_duration_with_a_unit() {
        for (args, ms) in [
            (quote!(timeout = "10s"), 10_000),
            (quote!(timeout = "250ms"), 250),
            (quote!(timeout = "2m"), 120_000),
            (quote!(timeout = "1h"), 3_600_000),
        ] {
            assert_eq!(parse(args.clone()).unwrap().timeout_ms, Some(ms), "{args}");
        }
    }

    #[test]
    fn malformed_timeouts_are_rejected() {
        for args in [
            quote!(timeout),
            quote!(timeout =),
            quote!(timeout = 10),
            quote!(timeout = "10"),
            quote!(timeout = "0s"),
            quote!(timeout = "10 s"),
            quote!(timeout = "1.5s"),
            quote!(timeout = "10days"),
            quote!(timeout = "-1s"),
            quote!(timeout = "99999999999999999999s"),
            quote!(timeout("10s")),
        ] {
            assert_eq!(error_messages(args.clone()), [TIMEOUT_FORM], "{args}");
        }
    }

    #[test]
    fn crate_without_a_path_is_rejected() {
        for args in [
            quote!(crate),
            quote!(crate =),
            quote!(crate = "traced_ffi"),
            quote!(crate(traced_ffi)),
            quote!(crate = traced_ffi::Tracer<u8>),
            quote!(crate = a::),
        ] {
            assert_eq!(error_messages(args.clone()), [CRATE_FORM], "{args}");
        }
    }

    #[test]
    fn missing_comma_between_options_is_a_syntax_error() {
        assert_eq!(
            error_messages(quote!(ignore should_panic)),
            ["expected `,` between options"]
        );
    }

    #[test]
    fn non_identifier_option_is_a_syntax_error() {
        assert_eq!(
            error_messages(quote!("ignore")),
            [format!("expected an option: {ALLOWED_OPTIONS}")]
        );
    }
}
