//! The `{Trait}Server` type: registers an implementation of the trait on a manager, one
//! handler per method, decoding requests and encoding responses.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::ast::{Kind, Method, Service};

fn registration(s: &Service, m: &Method) -> TokenStream {
    let trait_name = &s.ident;
    let service = format_ident!("{}Service", s.ident);
    let (name, c, req) = (&m.ident, m.const_name(), &m.req);
    match m.kind {
        Kind::Single => quote! {
            let this = ::std::sync::Arc::clone(&self.0);
            let regs = regs.single(#service::#c, move |_ctx, payload: ::core::option::Option<::grid::Bytes>| {
                let this = ::std::sync::Arc::clone(&this);
                async move {
                    let req = ::grid::typed::__private::decode_request::<#req>(payload.as_deref())?;
                    let resp = #trait_name::#name(&*this, req).await?;
                    ::grid::typed::__private::encode_response(&resp)
                }
            });
        },
        Kind::HandlerStream | Kind::TwoWay => {
            let (in_cap, out_cap) = (m.in_capacity, m.out_capacity);
            let input = if m.kind == Kind::TwoWay {
                quote! {
                    let input = ::grid::Receiver::new(input.ok_or_else(|| ::grid::RemoteError::new("stream opened without input"))?);
                    #trait_name::#name(&*this, req, input, ::grid::Sender::new(output)).await
                }
            } else {
                quote! {
                    let _ = input;
                    #trait_name::#name(&*this, req, ::grid::Sender::new(output)).await
                }
            };
            quote! {
                let this = ::std::sync::Arc::clone(&self.0);
                let regs = regs.stream(
                    #service::#c,
                    ::grid::StreamHandler::new(move |call: ::grid::StreamCall| {
                        let this = ::std::sync::Arc::clone(&this);
                        async move {
                            let ::grid::StreamCall { payload, input, output, .. } = call;
                            let req = ::grid::typed::__private::decode_request::<#req>(payload.as_deref())?;
                            #input
                        }
                    })
                    .in_capacity(#in_cap)
                    .out_capacity(#out_cap),
                );
            }
        }
    }
}

pub fn render_server(s: &Service) -> TokenStream {
    let (vis, trait_name) = (&s.vis, &s.ident);
    let server = format_ident!("{}Server", s.ident);
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

        impl<T: #trait_name> ::grid::ServiceServer for #server<T> {
            fn registrations(self) -> ::grid::typed::Registrations {
                let regs = ::grid::typed::Registrations::new();
                #(#regs)*
                regs
            }
        }
    }
}
