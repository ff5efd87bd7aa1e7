//! The rewritten trait (methods return `Send` futures, so servers can run them on any
//! thread) and the `{Trait}Service` type that names the handler ids.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ast::{Method, Service, Shape};
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
    let entries = s.methods.iter().map(|m| method_info(s, m));
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
            const METHODS: &'static [#krate::MethodInfo] = &[#(#entries),*];
        }
    }
}

/// A method's `MethodInfo`: its name, id, shape and the type names as written.
fn method_info(s: &Service, m: &Method) -> TokenStream {
    let krate = &s.krate;
    let service = format_ident!("{}Service", s.ident);
    let (c, name, request) = (m.const_name(), m.ident.to_string(), type_name(&m.req.ty));
    let (shape, input, output, answer) = match &m.shape {
        Shape::Single { answer } => ("Single", None, None, Some(answer)),
        Shape::HandlerStream { output, .. } => ("HandlerStream", None, Some(&output.item), None),
        Shape::TwoWay { input, output, .. } => {
            ("TwoWay", Some(&input.item), Some(&output.item), None)
        }
        Shape::Upload { input, answer, .. } => ("Upload", Some(&input.item), None, Some(answer)),
    };
    let shape = format_ident!("{shape}");
    let some = |t: Option<&syn::Type>| match t.map(type_name) {
        Some(t) => quote!(::core::option::Option::Some(#t)),
        None => quote!(::core::option::Option::None),
    };
    let (input, output, answer) = (some(input), some(output), some(answer));
    quote! {
        #krate::MethodInfo {
            name: #name,
            id: #service::#c,
            shape: #krate::CallShape::#shape,
            request: #request,
            input: #input,
            output: #output,
            answer: #answer,
        }
    }
}

/// A type as written, without the token printer's spaces (`Vec<String>`, `&'a str`).
fn type_name(ty: &syn::Type) -> String {
    let spaced = quote!(#ty).to_string();
    let mut out = String::with_capacity(spaced.len());
    let mut chars = spaced.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' ' {
            let prev = out.chars().last();
            let next = chars.peek().copied();
            // A space stays only between two words (`dyn Trait`, `&'a str`, `mut T`).
            let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            if word(prev) && (word(next) || next == Some('\'')) || matches!(prev, Some(',' | ';')) {
                out.push(' ');
            }
            continue;
        }
        out.push(c);
    }
    out
}
