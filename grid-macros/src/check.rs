//! Parsing the attributed trait into the model, checking every rule and collecting every
//! error with its span, so the user sees all problems at once.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;
use syn::{
    Attribute, Expr, ExprLit, FnArg, GenericArgument, ItemTrait, Lit, MetaNameValue, Pat,
    PathArguments, ReturnType, TraitItem, TraitItemFn, Type,
};

use crate::ast::{Kind, Method, Service};
use crate::ids::{handler_id, method_id};

/// Errors found so far.
#[derive(Default)]
pub struct Errors(Vec<syn::Error>);

impl Errors {
    pub fn push(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.0.push(syn::Error::new(span, msg));
    }

    pub fn into_tokens(self) -> TokenStream {
        self.0.into_iter().map(|e| e.to_compile_error()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

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
            errors.0.push(e);
            return None;
        }
    };
    let mut id = None;
    for pair in pairs {
        if pair.path.is_ident("id") {
            let v = int_value(&pair.value, errors, "service id")?;
            if v == 0 || v > u64::from(u16::MAX) {
                errors.push(
                    pair.value.span(),
                    format!("service id {v} is out of range: use 1..=65535 (0 is reserved)"),
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
            "a service needs a stable id on the wire: write #[grid::service(id = N)] with N in 1..=65535",
        );
    }
    id
}

#[derive(Default)]
struct MethodOptions {
    stream: bool,
    id: Option<(u16, Span)>,
    max_window: Option<u64>,
    deadline_ms: Option<u64>,
}

/// Reads and removes `#[grid(...)]` attributes from a method.
fn method_options(attrs: &mut Vec<Attribute>, errors: &mut Errors) -> MethodOptions {
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
                        "unknown grid option; expected one of: stream, id, max_window, deadline_ms",
                    );
                    if meta.input.peek(syn::Token![=]) {
                        let _: Expr = meta.value()?.parse()?;
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            errors.0.push(e);
        }
    }
    *attrs = kept;
    o
}

/// The generic argument of a one-argument type whose last path segment is `name`
/// (`grid::Sender<T>` → `T`).
fn wrapped(ty: &Type, name: &str) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first() {
        Some(GenericArgument::Type(t)) if args.args.len() == 1 => Some(t.clone()),
        _ => None,
    }
}

/// `Result<T, RemoteError>` → `T`.
fn result_ok_type(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut it = args.args.iter();
    let (Some(GenericArgument::Type(ok)), Some(GenericArgument::Type(Type::Path(err))), None) =
        (it.next(), it.next(), it.next())
    else {
        return None;
    };
    let err_ok = err
        .path
        .segments
        .last()
        .is_some_and(|s| s.ident == "RemoteError");
    err_ok.then(|| ok.clone())
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(t) if t.elems.is_empty())
}

fn check_method(f: &mut TraitItemFn, errors: &mut Errors) -> Option<Method> {
    let before = errors.0.len();
    let options = method_options(&mut f.attrs, errors);
    let sig = f.sig.clone();
    // The trait is re-emitted as written when there are errors: a pattern other than a
    // name would add a rustc error of its own there, so it becomes `_`.
    for arg in f.sig.inputs.iter_mut() {
        if let FnArg::Typed(pt) = arg {
            if !matches!(&*pt.pat, Pat::Ident(_) | Pat::Wild(_)) {
                *pt.pat = syn::parse_quote!(_);
            }
        }
    }
    let sig = &sig;
    let span = sig.ident.span();
    if sig.asyncness.is_none() {
        errors.push(
            sig.fn_token.span(),
            format!(
                "`{}` must be an `async fn`: grid service methods are asynchronous",
                sig.ident
            ),
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(
            sig.generics.span(),
            format!(
                "`{}` cannot be generic: every method needs one concrete wire type",
                sig.ident
            ),
        );
    }
    if sig.variadic.is_some()
        || sig.abi.is_some()
        || sig.unsafety.is_some()
        || sig.constness.is_some()
    {
        errors.push(
            span,
            format!(
                "`{}`: only plain `async fn` methods are supported",
                sig.ident
            ),
        );
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        Some(FnArg::Receiver(r)) => errors.push(
            r.span(),
            format!(
                "`{}` must take `&self` (services are shared between concurrent calls)",
                sig.ident
            ),
        ),
        _ => errors.push(
            span,
            format!("`{}` must take `&self` as its first parameter", sig.ident),
        ),
    }
    let mut params = Vec::new();
    for arg in sig.inputs.iter() {
        let FnArg::Typed(pt) = arg else { continue };
        match &*pt.pat {
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                params.push((pi.ident.clone(), (*pt.ty).clone()))
            }
            other => {
                errors.push(other.span(), "unsupported parameter pattern: give the parameter a plain name, like `req: Request`");
                params.push((
                    syn::Ident::new("unsupported", other.span()),
                    (*pt.ty).clone(),
                ));
            }
        }
    }
    let ret = match &sig.output {
        ReturnType::Type(_, t) => (**t).clone(),
        ReturnType::Default => {
            errors.push(
                span,
                format!("`{}` must return `Result<_, grid::RemoteError>`", sig.ident),
            );
            syn::parse_quote!(())
        }
    };
    let ok = result_ok_type(&ret);
    if ok.is_none() && !matches!(sig.output, ReturnType::Default) {
        errors.push(
            ret.span(),
            "wrong return type: expected `Result<T, grid::RemoteError>`",
        );
    }
    let senders: Vec<usize> = params
        .iter()
        .enumerate()
        .filter(|(_, (_, t))| wrapped(t, "Sender").is_some())
        .map(|(i, _)| i)
        .collect();
    let receivers: Vec<usize> = params
        .iter()
        .enumerate()
        .filter(|(_, (_, t))| wrapped(t, "Receiver").is_some())
        .map(|(i, _)| i)
        .collect();
    let upload = options.stream && senders.is_empty() && receivers == [1] && params.len() == 2;
    let (kind, req, resp, input, output_name) = if upload {
        let in_item = wrapped(&params[1].1, "Receiver")?;
        (
            Kind::Upload,
            params[0].clone(),
            ok.clone().unwrap_or_else(|| syn::parse_quote!(())),
            Some((params[1].0.clone(), in_item)),
            None,
        )
    } else if options.stream {
        if let Some(ok) = &ok {
            if !is_unit(ok) {
                errors.push(ret.span(), "a stream method returns `Result<(), grid::RemoteError>`: its items go through the Sender");
            }
        }
        let expected = if receivers.is_empty() { 2 } else { 3 };
        let shape_ok = params.len() == expected
            && senders == [expected - 1]
            && (receivers.is_empty() || receivers == [1])
            && wrapped(&params[0].1, "Sender").is_none()
            && wrapped(&params[0].1, "Receiver").is_none();
        if !shape_ok {
            errors.push(
                span,
                format!(
                    "stream method `{}` must take `(&self, req: Request, out: grid::Sender<Item>)`, `(&self, req: Request, input: grid::Receiver<In>, out: grid::Sender<Item>)` or, for an upload answered once, `(&self, req: Request, input: grid::Receiver<In>)`",
                    sig.ident
                ),
            );
            return None;
        }
        let out_item = wrapped(&params[expected - 1].1, "Sender")?;
        let input = (expected == 3)
            .then(|| (params[1].0.clone(), wrapped(&params[1].1, "Receiver")))
            .and_then(|(n, t)| Some((n, t?)));
        let kind = if input.is_some() {
            Kind::TwoWay
        } else {
            Kind::HandlerStream
        };
        (
            kind,
            params[0].clone(),
            out_item,
            input,
            Some(params[expected - 1].0.clone()),
        )
    } else {
        if !senders.is_empty() || !receivers.is_empty() {
            errors.push(
                span,
                format!(
                    "`{}` takes a Sender or Receiver: mark it #[grid(stream)]",
                    sig.ident
                ),
            );
            return None;
        }
        if params.len() != 1 {
            errors.push(span, format!("`{}` must take exactly one request parameter after `&self` (wrap several values in a struct)", sig.ident));
            return None;
        }
        if options.max_window.is_some() {
            errors.push(span, "max_window applies to #[grid(stream)] methods only");
        }
        (
            Kind::Single,
            params[0].clone(),
            ok.clone().unwrap_or_else(|| syn::parse_quote!(())),
            None,
            None,
        )
    };
    if errors.0.len() != before {
        return None;
    }
    Some(Method {
        attrs: f.attrs.clone(),
        ident: sig.ident.clone(),
        span,
        kind,
        method_id: options
            .id
            .map_or_else(|| method_id(&sig.ident.to_string()), |(v, _)| v),
        req_name: req.0,
        req: req.1,
        resp,
        ret,
        input,
        output_name,
        param_types: params.into_iter().map(|(_, t)| t).collect(),
        max_window: options.max_window,
        deadline_ms: options.deadline_ms.unwrap_or(0),
    })
}

/// Checks the trait; returns the model, or `None` with the errors recorded.
pub fn check(item: &mut ItemTrait, args: ServiceArgs, errors: &mut Errors) -> Option<Service> {
    let ServiceArgs { id, krate } = args;
    if !item.generics.params.is_empty() {
        errors.push(
            item.generics.span(),
            "a grid service trait cannot be generic",
        );
    }
    let mut methods = Vec::new();
    for it in &mut item.items {
        match it {
            TraitItem::Fn(f) => {
                if f.default.is_some() {
                    errors.push(
                        f.sig.ident.span(),
                        "service methods cannot have a default body",
                    );
                }
                if let Some(m) = check_method(f, errors) {
                    methods.push(m);
                }
            }
            other => errors.push(
                other.span(),
                "a grid service trait may contain methods only",
            ),
        }
    }
    let mut seen: HashMap<u16, &Method> = HashMap::new();
    let mut duplicates = Vec::new();
    for m in &methods {
        if let Some(first) = seen.insert(m.method_id, m) {
            duplicates.push((
                m.span,
                m.ident.clone(),
                first.ident.clone(),
                first.span,
                m.method_id,
            ));
        }
    }
    for (span, ident, first, first_span, mid) in duplicates {
        let hid = id.map(|s| handler_id(s, mid)).unwrap_or(u32::from(mid));
        errors.push(span, format!("methods `{first}` and `{ident}` have the same handler id {hid:#010x}; give one of them another #[grid(id = N)]"));
        errors.push(
            first_span,
            format!("`{first}` has handler id {hid:#010x} too"),
        );
    }
    let id = id?;
    if !errors.is_empty() {
        return None;
    }
    Some(Service {
        attrs: item.attrs.clone(),
        vis: item.vis.clone(),
        ident: item.ident.clone(),
        id,
        krate,
        methods,
    })
}
