//! The model of a service the macro works from, after parsing and checking.

use proc_macro2::{Ident, Span};
use syn::{Attribute, Type, Visibility};

/// A checked service trait.
pub struct Service {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub ident: Ident,
    pub id: u16,
    /// The path of the runtime crate in generated code (`::grid`, or `crate = "..."`).
    pub krate: syn::Path,
    pub methods: Vec<Method>,
}

/// What kind of call a method is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `async fn m(&self, req: Req) -> Result<Resp, RemoteError>`
    Single,
    /// `#[grid(stream)] async fn m(&self, req: Req, out: Sender<T>) -> Result<(), RemoteError>`
    HandlerStream,
    /// `#[grid(stream)] async fn m(&self, req: Req, input: Receiver<I>, out: Sender<T>) -> ...`
    TwoWay,
    /// `#[grid(stream)] async fn m(&self, req: Req, input: Receiver<I>) -> Result<Resp, RemoteError>`:
    /// the caller streams, the handler answers once.
    Upload,
}

/// A checked method.
pub struct Method {
    pub attrs: Vec<Attribute>,
    pub ident: Ident,
    pub span: Span,
    pub kind: Kind,
    pub method_id: u16,
    pub req_name: Ident,
    pub req: Type,
    /// For single calls: the response type. For streams: the output item type.
    pub resp: Type,
    /// The full return type as written (kept in the rewritten trait).
    pub ret: Type,
    /// Two-way streams: the input parameter's name and item type.
    pub input: Option<(Ident, Type)>,
    /// Streams: the output parameter's name.
    pub output_name: Option<Ident>,
    /// The parameter types as written, in order after `&self`.
    pub param_types: Vec<Type>,
    /// Streams: the cap of both directions' windows, in bytes (`max_window`); `None`: the
    /// node's.
    pub max_window: Option<u64>,
    pub deadline_ms: u64,
}

impl Method {
    /// The SCREAMING_CASE name of the method's id constant.
    pub fn const_name(&self) -> Ident {
        Ident::new(&self.ident.to_string().to_uppercase(), self.ident.span())
    }
}
