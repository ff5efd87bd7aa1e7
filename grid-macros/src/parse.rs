//! Parsing: the `#[grid::service(...)]` arguments and each method's `#[grid(...)]`
//! options, from syn's tokens into plain values, with an error (and its span) for each
//! thing that cannot be read. What the values mean together is `check`'s concern.

use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, Lit, MetaNameValue};

use crate::errors::Errors;

fn int_value(expr: &Expr, errors: &mut Errors, what: &str) -> Option<u64> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => match i.base10_parse::<u64>() {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(i.span(), format!("{what}: {e}"));
                None
            }
        },
        other => {
            errors.push(other.span(), format!("{what} must be an integer literal"));
            None
        }
    }
}

/// The `#[grid::service(...)]` arguments.
pub struct ServiceArgs {
    /// `id = N`.
    pub id: Option<u16>,
    /// `crate = "path"`: where generated code finds grid (default `::grid`), for a user
    /// who renamed the dependency.
    pub krate: syn::Path,
}

/// Reads `id = N` and `crate = "path"` from the `#[grid::service(...)]` arguments.
pub fn service_args(args: TokenStream, errors: &mut Errors) -> ServiceArgs {
    let mut out = ServiceArgs {
        id: None,
        krate: syn::parse_quote!(::grid),
    };
    out.id = service_id(args, errors, &mut out.krate);
    out
}

fn service_id(args: TokenStream, errors: &mut Errors, krate: &mut syn::Path) -> Option<u16> {
    let parsed = syn::parse::Parser::parse2(
        syn::punctuated::Punctuated::<MetaNameValue, syn::Token![,]>::parse_terminated,
        args.clone(),
    );
    let pairs = match parsed {
        Ok(p) => p,
        Err(e) => {
            errors.add(e);
            return None;
        }
    };
    let mut id = None;
    for pair in pairs {
        if pair.path.is_ident("id") {
            let v = int_value(&pair.value, errors, "service id")?;
            if v == 0 || v >= u64::from(u16::MAX) {
                errors.push(
                    pair.value.span(),
                    format!("service id {v} is out of range: use 1..=65534 (0 is reserved, 65535 is grid's built-in service)"),
                );
                return None;
            }
            id = Some(v as u16);
        } else if pair.path.is_ident("crate") {
            match &pair.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(path),
                    ..
                }) => match path.parse::<syn::Path>() {
                    Ok(p) => *krate = p,
                    Err(e) => errors.push(
                        path.span(),
                        format!("`crate` must name a path, like \"::my_grid\": {e}"),
                    ),
                },
                other => errors.push(
                    other.span(),
                    "`crate` takes the path as a string: crate = \"my_grid\"",
                ),
            }
        } else {
            errors.push(
                pair.path.span(),
                "unknown service option; expected `id = N` or `crate = \"path\"`",
            );
        }
    }
    if id.is_none() {
        errors.push(
            Span::call_site(),
            "a service needs a stable id on the wire: write #[grid::service(id = N)] with N in 1..=65534",
        );
    }
    id
}

/// A method's `#[grid(...)]` options, as written.
#[derive(Default)]
pub struct MethodOptions {
    pub stream: bool,
    /// `idempotent`: where it was written.
    pub idempotent: Option<Span>,
    pub id: Option<(u16, Span)>,
    pub max_window: Option<u64>,
    pub deadline_ms: Option<u64>,
}

/// Reads and removes `#[grid(...)]` attributes from a method.
pub fn method_options(attrs: &mut Vec<Attribute>, errors: &mut Errors) -> MethodOptions {
    let mut o = MethodOptions::default();
    let mut kept = Vec::new();
    for attr in attrs.drain(..) {
        if !attr.path().is_ident("grid") {
            kept.push(attr);
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            let name = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
            match name.as_str() {
                "stream" => o.stream = true,
                "idempotent" => o.idempotent = Some(meta.path.span()),
                "max_window" => {
                    let expr: Expr = meta.value()?.parse()?;
                    o.max_window = crate::size::size_value(&expr, errors, "max_window");
                }
                "in_capacity" | "out_capacity" => {
                    errors.push(
                        meta.path.span(),
                        format!("{name} was removed: stream windows count bytes and grow to fit the link; cap one with max_window = \"1MiB\""),
                    );
                    let _: Expr = meta.value()?.parse()?;
                }
                "id" | "deadline_ms" => {
                    let expr: Expr = meta.value()?.parse()?;
                    let Some(v) = int_value(&expr, errors, &name) else { return Ok(()) };
                    match name.as_str() {
                        "id" if v == 0 || v > u64::from(u16::MAX) => errors.push(
                            expr.span(),
                            format!("method id {v} is out of range: use 1..=65535 (0 is reserved)"),
                        ),
                        "id" => o.id = Some((v as u16, expr.span())),
                        _ => o.deadline_ms = Some(v),
                    }
                }
                _ => {
                    errors.push(
                        meta.path.span(),
                        "unknown grid option; expected one of: stream, idempotent, id, max_window, deadline_ms",
                    );
                    if meta.input.peek(syn::Token![=]) {
                        let _: Expr = meta.value()?.parse()?;
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            errors.add(e);
        }
    }
    *attrs = kept;
    o
}
