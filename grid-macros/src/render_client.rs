//! The `{Trait}Client` type: one async method per service method, encoding the request and
//! decoding the answer; cheap to clone; deadlines per client and per call.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::ast::{Method, Service, Shape};

fn method(s: &Service, m: &Method) -> TokenStream {
    let krate = &s.krate;
    let service = format_ident!("{}Service", s.ident);
    let (name, c, req_name, req) = (&m.ident, m.const_name(), &m.req.name, &m.req.ty);
    let deadline_ms = m.deadline_ms;
    let attrs = m.attrs.iter().filter(|a| a.path().is_ident("doc"));
    let max_window = m
        .shape
        .max_window()
        .map(|w| quote! { call = call.max_window(#w); });
    let deadline = quote! {
        if let ::core::option::Option::Some(d) = #krate::typed::__private::deadline(self.deadline, #deadline_ms) {
            call = call.deadline(d);
        }
        #max_window
    };
    // What the caller gets, how it opens the call, and what it makes of the answer.
    let (answer, open, body) = match &m.shape {
        Shape::Single { answer } => (
            quote!(#answer),
            quote!(request),
            quote!(#krate::typed::decode(answer.as_deref())),
        ),
        Shape::HandlerStream { output, .. } => {
            let item = &output.item;
            (
                quote!(#krate::Receiver<#item>),
                quote!(open_stream),
                quote!(::core::result::Result::Ok(#krate::Receiver::new(answer.responses))),
            )
        }
        // A two-way stream's caller reads items; an upload's awaits one answer.
        Shape::TwoWay { input, output, .. } => {
            let (in_item, item) = (&input.item, &output.item);
            (
                quote!((#krate::Sender<#in_item>, #krate::Receiver<#item>)),
                quote!(open_stream),
                quote! {
                    let (requests, responses) = answer.split()?;
                    ::core::result::Result::Ok((#krate::Sender::new(requests), #krate::Receiver::new(responses)))
                },
            )
        }
        Shape::Upload { input, answer, .. } => {
            let in_item = &input.item;
            (
                quote!((#krate::Sender<#in_item>, #krate::Answer<#answer>)),
                quote!(open_stream),
                quote! {
                    let (requests, responses) = answer.split()?;
                    ::core::result::Result::Ok((#krate::Sender::new(requests), #krate::Answer::new(#krate::Receiver::new(responses))))
                },
            )
        }
    };
    if m.idempotent {
        // Safe to run twice: retried on a lost connection or a busy peer, within its deadline.
        return quote! {
            #(#attrs)*
            pub async fn #name(&self, #req_name: #req) -> ::core::result::Result<#answer, #krate::Error> {
                let payload = #krate::typed::encode(&#req_name)?;
                let deadline = #krate::typed::__private::deadline(self.deadline, #deadline_ms);
                let answer = #krate::typed::__private::call_idempotent(&self.target, #service::#c, payload, deadline).await?;
                #body
            }
        };
    }
    quote! {
        #(#attrs)*
        pub async fn #name(&self, #req_name: #req) -> ::core::result::Result<#answer, #krate::Error> {
            let payload = #krate::typed::encode(&#req_name)?;
            let mut call = self.target.#open(#service::#c, payload);
            #deadline
            let answer = call.await?;
            #body
        }
    }
}

pub fn render_client(s: &Service) -> TokenStream {
    let krate = &s.krate;
    let (vis, trait_name) = (&s.vis, &s.ident);
    let client = format_ident!("{}Client", s.ident);
    let doc =
        format!("Calls the [`{trait_name}`] service on a connection or subroute. Cheap to clone.");
    let methods = s.methods.iter().map(|m| method(s, m));
    quote! {
        #[doc = #doc]
        #[derive(Clone, Debug)]
        #vis struct #client {
            target: #krate::Target,
            deadline: ::core::option::Option<::core::time::Duration>,
        }

        impl #client {
            /// A client for the service on `target` (a `Connection` or a `Subroute`).
            pub fn new(target: impl ::core::convert::Into<#krate::Target>) -> Self {
                Self { target: target.into(), deadline: ::core::option::Option::None }
            }

            /// A copy of this client whose calls use `deadline` (instead of each method's
            /// default, or the manager's).
            pub fn with_deadline(&self, deadline: ::core::time::Duration) -> Self {
                Self { target: self.target.clone(), deadline: ::core::option::Option::Some(deadline) }
            }

            #(#methods)*
        }
    }
}
