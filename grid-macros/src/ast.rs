//! The model of a service the macro works from, after parsing and checking: one type per
//! method shape, holding exactly what that shape has, so the renderers never ask whether a
//! method has an input or an output.

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

/// A parameter as written: its name and its declared type (`out: grid::Sender<Entry>`).
#[derive(Clone)]
pub struct Param {
    pub name: Ident,
    pub ty: Type,
}

/// A stream's caller-side input: the `Receiver<In>` parameter and its item type.
pub struct Input {
    pub param: Param,
    pub item: Type,
}

/// A stream's handler-side output: the `Sender<Item>` parameter and its item type.
pub struct Output {
    pub param: Param,
    pub item: Type,
}

/// What kind of call a method is, with what that kind has.
// A few per trait, built once at compile time: boxing the larger variants buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Shape {
    /// `async fn m(&self, req: Req) -> Result<Answer, RemoteError>`
    Single { answer: Type },
    /// `#[grid(stream)] async fn m(&self, req: Req, out: Sender<T>) -> Result<(), RemoteError>`
    HandlerStream {
        output: Output,
        max_window: Option<u64>,
    },
    /// `#[grid(stream)] async fn m(&self, req: Req, input: Receiver<I>, out: Sender<T>) -> ...`
    TwoWay {
        input: Input,
        output: Output,
        max_window: Option<u64>,
    },
    /// `#[grid(stream)] async fn m(&self, req: Req, input: Receiver<I>) -> Result<Answer, RemoteError>`:
    /// the caller streams, the handler answers once.
    Upload {
        input: Input,
        answer: Type,
        max_window: Option<u64>,
    },
}

impl Shape {
    /// A stream's cap on both directions' windows, in bytes (`max_window`); `None`: the
    /// node's, or a single call.
    pub fn max_window(&self) -> Option<u64> {
        match self {
            Shape::Single { .. } => None,
            Shape::HandlerStream { max_window, .. }
            | Shape::TwoWay { max_window, .. }
            | Shape::Upload { max_window, .. } => *max_window,
        }
    }

    /// The types that cross the wire besides the request: answers and items.
    pub fn wire_types(&self) -> Vec<&Type> {
        match self {
            Shape::Single { answer } => vec![answer],
            Shape::HandlerStream { output, .. } => vec![&output.item],
            Shape::TwoWay { input, output, .. } => vec![&input.item, &output.item],
            Shape::Upload { input, answer, .. } => vec![&input.item, answer],
        }
    }
}

/// A checked method.
pub struct Method {
    pub attrs: Vec<Attribute>,
    pub ident: Ident,
    pub span: Span,
    pub method_id: u16,
    pub req: Param,
    pub shape: Shape,
    /// The full return type as written (kept in the rewritten trait).
    pub ret: Type,
    pub deadline_ms: u64,
    /// `#[grid(idempotent)]`: safe to run twice, so its client retries it.
    pub idempotent: bool,
}

impl Method {
    /// The SCREAMING_CASE name of the method's id constant.
    pub fn const_name(&self) -> Ident {
        Ident::new(&self.ident.to_string().to_uppercase(), self.ident.span())
    }

    /// The parameters after `&self`, in the order written.
    pub fn params(&self) -> Vec<&Param> {
        let rest = match &self.shape {
            Shape::Single { .. } => vec![],
            Shape::HandlerStream { output, .. } => vec![&output.param],
            Shape::TwoWay { input, output, .. } => vec![&input.param, &output.param],
            Shape::Upload { input, .. } => vec![&input.param],
        };
        std::iter::once(&self.req).chain(rest).collect()
    }
}
