//! Validation: from the parsed trait to the model, one [`Shape`] per method, checking
//! every rule and recording every error with its span (`errors.rs`), so the user sees all
//! problems at once. Attributes are read by `parse.rs` first.

use std::collections::HashMap;

use syn::spanned::Spanned;
use syn::{
    FnArg, GenericArgument, ItemTrait, Pat, PathArguments, ReturnType, Signature, TraitItem,
    TraitItemFn, Type,
};

use crate::ast::{Input, Method, Output, Param, Service, Shape};
use crate::errors::Errors;
use crate::ids::{handler_id, method_id};
use crate::parse::{method_options, MethodOptions, ServiceArgs};

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

/// The rules every method's signature keeps, whatever its shape: `async`, not generic,
/// plain, taking `&self`.
fn check_signature(sig: &Signature, errors: &mut Errors) {
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
}

/// The parameters after `&self`, each with a plain name (another pattern is an error, and
/// is named `unsupported` so that checking can go on).
fn params(sig: &Signature, errors: &mut Errors) -> Vec<Param> {
    let mut params = Vec::new();
    for arg in sig.inputs.iter() {
        let FnArg::Typed(pt) = arg else { continue };
        let name = match &*pt.pat {
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => pi.ident.clone(),
            other => {
                errors.push(other.span(), "unsupported parameter pattern: give the parameter a plain name, like `req: Request`");
                syn::Ident::new("unsupported", other.span())
            }
        };
        params.push(Param {
            name,
            ty: (*pt.ty).clone(),
        });
    }
    params
}

/// The return type as written, and its `T` when it is `Result<T, RemoteError>`.
fn return_type(sig: &Signature, errors: &mut Errors) -> (Type, Option<Type>) {
    let ret = match &sig.output {
        ReturnType::Type(_, t) => (**t).clone(),
        ReturnType::Default => {
            errors.push(
                sig.ident.span(),
                format!("`{}` must return `Result<_, grid::RemoteError>`", sig.ident),
            );
            return (syn::parse_quote!(()), None);
        }
    };
    let ok = result_ok_type(&ret);
    if ok.is_none() {
        errors.push(
            ret.span(),
            "wrong return type: expected `Result<T, grid::RemoteError>`",
        );
    }
    (ret, ok)
}

/// A `Receiver<In>` parameter as a stream's input.
fn input(param: &Param) -> Option<Input> {
    let item = wrapped(&param.ty, "Receiver")?;
    Some(Input {
        param: param.clone(),
        item,
    })
}

/// A `Sender<Item>` parameter as a stream's output.
fn output(param: &Param) -> Option<Output> {
    let item = wrapped(&param.ty, "Sender")?;
    Some(Output {
        param: param.clone(),
        item,
    })
}

/// The method's shape, from its options, parameters and return type; `None` with an error
/// recorded when the parameters fit no shape. `ok` is `None` when the return type was
/// wrong (already reported).
fn shape(
    sig: &Signature,
    options: &MethodOptions,
    params: &[Param],
    ret: &Type,
    ok: Option<Type>,
    errors: &mut Errors,
) -> Option<(Param, Shape)> {
    let span = sig.ident.span();
    let answer = || ok.clone().unwrap_or_else(|| syn::parse_quote!(()));
    let max_window = options.max_window;
    let is = |p: &Param, name| wrapped(&p.ty, name).is_some();
    let ends = |name| params.iter().filter(|p| is(p, name)).count();
    let (senders, receivers) = (ends("Sender"), ends("Receiver"));
    match (options.stream, params) {
        (false, [req]) if senders + receivers == 0 => {
            if max_window.is_some() {
                errors.push(span, "max_window applies to #[grid(stream)] methods only");
            }
            Some((req.clone(), Shape::Single { answer: answer() }))
        }
        (false, _) if senders + receivers > 0 => {
            errors.push(
                span,
                format!(
                    "`{}` takes a Sender or Receiver: mark it #[grid(stream)]",
                    sig.ident
                ),
            );
            None
        }
        (false, _) => {
            errors.push(span, format!("`{}` must take exactly one request parameter after `&self` (wrap several values in a struct)", sig.ident));
            None
        }
        (true, [req, single])
            if senders + receivers == 1 && !is(req, "Sender") && !is(req, "Receiver") =>
        {
            let shape = match (input(single), output(single)) {
                // The caller streams, the handler answers once.
                (Some(input), _) => Shape::Upload {
                    input,
                    answer: answer(),
                    max_window,
                },
                (None, Some(output)) => {
                    stream_returns_unit(ret, ok.as_ref(), errors);
                    Shape::HandlerStream { output, max_window }
                }
                (None, None) => return None,
            };
            Some((req.clone(), shape))
        }
        (true, [req, inp, out])
            if senders == 1 && receivers == 1 && !is(req, "Sender") && !is(req, "Receiver") =>
        {
            let (Some(input), Some(output)) = (input(inp), output(out)) else {
                stream_shape_error(sig, errors);
                return None;
            };
            stream_returns_unit(ret, ok.as_ref(), errors);
            Some((
                req.clone(),
                Shape::TwoWay {
                    input,
                    output,
                    max_window,
                },
            ))
        }
        (true, _) => {
            stream_shape_error(sig, errors);
            None
        }
    }
}

/// A stream with an output returns `Result<(), RemoteError>`: its items go out through
/// the Sender.
fn stream_returns_unit(ret: &Type, ok: Option<&Type>, errors: &mut Errors) {
    if ok.is_some_and(|ok| !is_unit(ok)) {
        errors.push(ret.span(), "a stream method returns `Result<(), grid::RemoteError>`: its items go through the Sender");
    }
}

fn stream_shape_error(sig: &Signature, errors: &mut Errors) {
    errors.push(
        sig.ident.span(),
        format!(
            "stream method `{}` must take `(&self, req: Request, out: grid::Sender<Item>)`, `(&self, req: Request, input: grid::Receiver<In>, out: grid::Sender<Item>)` or, for an upload answered once, `(&self, req: Request, input: grid::Receiver<In>)`",
            sig.ident
        ),
    );
}

fn check_method(f: &mut TraitItemFn, errors: &mut Errors) -> Option<Method> {
    let before = errors.count();
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
    check_signature(&sig, errors);
    let params = params(&sig, errors);
    let (ret, ok) = return_type(&sig, errors);
    let (req, shape) = shape(&sig, &options, &params, &ret, ok, errors)?;
    if let (Some(at), false) = (options.idempotent, matches!(shape, Shape::Single { .. })) {
        errors.push(
            at,
            "idempotent applies to single calls: a stream that fails midway cannot be run again without repeating what its caller already received",
        );
    }
    if errors.count() != before {
        return None;
    }
    Some(Method {
        attrs: f.attrs.clone(),
        ident: sig.ident.clone(),
        span: sig.ident.span(),
        method_id: options
            .id
            .map_or_else(|| method_id(&sig.ident.to_string()), |(v, _)| v),
        req,
        shape,
        ret,
        deadline_ms: options.deadline_ms.unwrap_or(0),
        idempotent: options.idempotent.is_some(),
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
    if errors.count() > 0 {
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
