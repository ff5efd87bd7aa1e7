//! Procedural macros for grid. Use them through the `grid` crate: `#[grid::service]`.
//!
//! The macro parses the trait into a small model (`ast`), checks it and collects every
//! error with its span (`check`), then renders the trait, the ids, the server and the
//! client (`render_*`). On errors it still emits the trait without grid's attributes, so
//! the user sees the macro's errors and not a cascade of others.

#![deny(missing_docs)]

mod ast;
mod check;
mod ids;
mod render_client;
mod render_server;
mod render_trait;

use proc_macro::TokenStream;
use quote::quote;

/// Turns a trait into a grid service: stable handler ids, a typed client and server
/// dispatch. See the `grid` crate's documentation of `grid::service` for the full guide.
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = check::Errors::default();
    let id = check::service_id(args.into(), &mut errors);
    let mut item: syn::ItemTrait = match syn::parse(item) {
        Ok(i) => i,
        Err(e) => {
            let mut e = e.to_compile_error();
            e.extend(errors.into_tokens());
            return e.into();
        }
    };
    match check::check(&mut item, id, &mut errors) {
        Some(service) if errors.is_empty() => {
            let t = render_trait::render_trait(&service);
            let ids = render_trait::render_ids(&service);
            let server = render_server::render_server(&service);
            let client = render_client::render_client(&service);
            quote!(#t #ids #server #client).into()
        }
        _ => {
            // `check` removed grid's attributes from the methods: the plain trait compiles.
            let errs = errors.into_tokens();
            quote!(#item #errs).into()
        }
    }
}
