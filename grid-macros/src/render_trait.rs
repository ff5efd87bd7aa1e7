//! The rewritten trait (methods return `Send` futures, so servers can run them on any
//! thread) and the `{Trait}Service` type that names the handler ids.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ast::Service;
use crate::ids::handler_id;

pub fn render_trait(s: &Service) -> TokenStream {
    let Service {
        attrs, vis, ident, ..
    } = s;
    let methods = s.methods.iter().map(|m| {
        let (attrs, name, ret) = (&m.attrs, &m.ident, &m.ret);
        let params = m.params().into_iter().map(|p| {
            let (name, ty) = (&p.name, &p.ty);
            quote!(#name: #ty)
        });
        quote_spanned! {m.span=>
            #(#attrs)*
            fn #name(&self, #(#params),*) -> impl ::core::future::Future<Output = #ret> + ::core::marker::Send;
        }
    });
    quote! {
        #(#attrs)*
        #vis trait #ident: ::core::marker::Send + ::core::marker::Sync + 'static {
            #(#methods)*
        }
    }
}

pub fn render_ids(s: &Service) -> TokenStream {
    let krate = &s.krate;
    let vis = &s.vis;
    let service = format_ident!("{}Service", s.ident);
    let name = s.ident.to_string();
    let sid = s.id;
    let doc = format!("Handler ids and description of the [`{name}`] service (id {sid}).");
    let consts = s.methods.iter().map(|m| {
        let c = m.const_name();
        let id = handler_id(s.id, m.method_id);
        let doc = format!("The handler id of `{}::{}`: {id:#010x}.", name, m.ident);
        quote! {
            #[doc = #doc]
            pub const #c: #krate::HandlerId = #krate::HandlerId::new(#id);
        }
    });
    let entries = s.methods.iter().map(|m| {
        let (c, n) = (m.const_name(), m.ident.to_string());
        quote!((#n, #service::#c))
    });
    let wire_checks = s.methods.iter().flat_map(|m| {
        let mut types = vec![&m.req.ty];
        types.extend(m.shape.wire_types());
        types.into_iter().map(|t| {
            quote_spanned! {t.span()=>
                #krate::typed::__private::assert_wire_type::<#t>();
            }
        })
    });
    quote! {
        const _: fn() = || {
            #(#wire_checks)*
        };

        #[doc = #doc]
        #[derive(Clone, Copy, Debug)]
        #vis struct #service;

        impl #service {
            #(#consts)*
        }

        impl #krate::Service for #service {
            const NAME: &'static str = #name;
            const SERVICE_ID: u16 = #sid;
            const METHODS: &'static [(&'static str, #krate::HandlerId)] = &[#(#entries),*];
        }
    }
}
