//! The `{Trait}Server` type: registers an implementation of the trait on a manager, one
//! handler per method, decoding requests and encoding responses.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::ast::{Method, Service, Shape};

fn registration(s: &Service, m: &Method) -> TokenStream {
    let krate = &s.krate;
    let trait_name = &s.ident;
    let service = format_ident!("{}Service", s.ident);
    let (name, c, req) = (&m.ident, m.const_name(), &m.req.ty);
    let input = quote! {
        let input = #krate::Receiver::new(input.ok_or_else(|| #krate::RemoteError::new("stream opened without input"))?);
    };
    let (call, with_input) = match &m.shape {
        Shape::Single { .. } => {
            return quote! {
                let this = ::std::sync::Arc::clone(&self.0);
                let regs = regs.single(#service::#c, move |_ctx, payload: ::core::option::Option<#krate::Bytes>| {
                    let this = ::std::sync::Arc::clone(&this);
                    async move {
                        let req = #krate::typed::__private::decode_request::<#req>(payload.as_deref())?;
                        let resp = #trait_name::#name(&*this, req).await?;
                        #krate::typed::__private::encode_response(&resp)
                    }
                });
            };
        }
        Shape::HandlerStream { .. } => (
            quote! {
                let _ = input;
                #trait_name::#name(&*this, req, #krate::Sender::new(output)).await
            },
            None,
        ),
        Shape::TwoWay { .. } => (
            quote! {
                #input
                #trait_name::#name(&*this, req, input, #krate::Sender::new(output)).await
            },
            Some(quote! { .with_input() }),
        ),
        // The answer is the one item the handler side sends, then its end.
        Shape::Upload { .. } => (
            quote! {
                #input
                let answer = #trait_name::#name(&*this, req, input).await?;
                let mut output = #krate::Sender::new(output);
                output.send(&answer).await?;
                ::core::result::Result::Ok(())
            },
            Some(quote! { .with_input() }),
        ),
    };
    let max_window = m.shape.max_window().map(|w| quote! { .max_window(#w) });
    quote! {
        let this = ::std::sync::Arc::clone(&self.0);
        let regs = regs.stream(
            #service::#c,
            #krate::StreamHandler::new(move |call: #krate::StreamCall| {
                let this = ::std::sync::Arc::clone(&this);
                async move {
                    let #krate::StreamCall { payload, input, output, .. } = call;
                    let req = #krate::typed::__private::decode_request::<#req>(payload.as_deref())?;
                    #call
                }
            })
            #with_input
            #max_window,
        );
    }
}

pub fn render_server(s: &Service) -> TokenStream {
    let krate = &s.krate;
    let (vis, trait_name) = (&s.vis, &s.ident);
    let server = format_ident!("{}Server", s.ident);
    let service = format_ident!("{}Service", s.ident);
    let doc = format!(
        "Serves an implementation of [`{trait_name}`]: register it with `Manager::register`."
    );
    let regs = s.methods.iter().map(|m| registration(s, m));
    quote! {
        #[doc = #doc]
        #vis struct #server<T>(::std::sync::Arc<T>);

        impl<T: #trait_name> #server<T> {
            /// Wraps an implementation.
            pub fn new(inner: T) -> Self {
                Self(::std::sync::Arc::new(inner))
            }

            /// Wraps an implementation that is shared with other code.
            pub fn from_arc(inner: ::std::sync::Arc<T>) -> Self {
                Self(inner)
            }
        }

        impl<T: #trait_name> #krate::ServiceServer for #server<T> {
            fn registrations(self) -> #krate::typed::Registrations {
                let regs = #krate::typed::Registrations::of::<#service>();
                #(#regs)*
                regs
            }
        }
    }
}
