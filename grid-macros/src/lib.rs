//! Procedural macros for grid. Use them through the `grid` crate: `#[grid::service]`.
//!
//! The macro reads the attributes (`parse`), checks the trait into a small model with one
//! type per method shape (`check` → `ast`), collecting every error with its span
//! (`errors`), then renders the trait, the ids, the server and the client (`render_*`). On
//! errors it still emits the trait without grid's attributes, so the user sees the macro's
//! errors and not a cascade of others.

#![deny(missing_docs)]

mod ast;
mod check;
mod errors;
mod ids;
mod parse;
mod render_client;
mod render_server;
mod render_trait;
mod size;

use proc_macro::TokenStream;
use quote::quote;

/// Turns a trait into a grid service: stable handler ids, a typed client and server
/// dispatch. See the `grid` crate's documentation of `grid::service` for the full guide.
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = errors::Errors::new();
    let args = parse::service_args(args.into(), &mut errors);
    let mut item: syn::ItemTrait = match syn::parse(item) {
        Ok(i) => i,
        Err(e) => {
            let mut tokens = e.to_compile_error();
            tokens.extend(errors.finish().err());
            return tokens.into();
        }
    };
    let service = check::check(&mut item, args, &mut errors);
    match (service, errors.finish()) {
        (Some(service), Ok(())) => {
            let t = render_trait::render_trait(&service);
            let ids = render_trait::render_ids(&service);
            let server = render_server::render_server(&service);
            let client = render_client::render_client(&service);
            quote!(#t #ids #server #client).into()
        }
        // `check` removed grid's attributes from the methods: the plain trait compiles.
        (_, errs) => {
            let errs = errs.err();
            quote!(#item #errs).into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything the macro generates, for `args` on `item`.
    fn expand(args: proc_macro2::TokenStream, item: syn::ItemTrait) -> String {
        let mut errors = errors::Errors::new();
        let args = parse::service_args(args, &mut errors);
        let mut item = item;
        let s = check::check(&mut item, args, &mut errors).expect("a valid service");
        assert!(errors.finish().is_ok());
        let out = [
            render_trait::render_trait(&s),
            render_trait::render_ids(&s),
            render_server::render_server(&s),
            render_client::render_client(&s),
        ];
        out.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn generated_code_names_the_crate_it_is_told() {
        let item: syn::ItemTrait = syn::parse_quote! {
            pub trait Kv {
                async fn get(&self, key: String) -> Result<Option<String>, RemoteError>;
                #[grid(stream)]
                async fn scan(&self, prefix: String, out: Sender<String>) -> Result<(), RemoteError>;
                #[grid(stream)]
                async fn put_all(&self, s: String, input: Receiver<u8>, out: Sender<u64>) -> Result<(), RemoteError>;
            }
        };
        let default = expand(quote!(id = 9), item.clone());
        assert!(default.contains(":: grid :: typed"), "{default}");
        let renamed = expand(quote!(id = 9, crate = "::my_rpc"), item);
        assert!(!renamed.contains(":: grid ::"), "{renamed}");
        assert!(renamed.contains(":: my_rpc :: typed"), "{renamed}");
    }
}
