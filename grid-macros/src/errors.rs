//! The errors found while parsing and checking a service, each with its span, so the user
//! sees every problem at once. As serde_derive's `Ctxt`: the collection must be ended with
//! [`Errors::finish`]; dropping it unchecked is a bug in the macro, and panics.

use proc_macro2::{Span, TokenStream};

/// Errors found so far.
pub struct Errors {
    errors: Vec<syn::Error>,
    finished: bool,
}

impl Errors {
    pub fn new() -> Self {
        Self {
            errors: Vec::new(),
            finished: false,
        }
    }

    /// Records an error at `span`.
    pub fn push(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.errors.push(syn::Error::new(span, msg));
    }

    /// Records an error syn reported.
    pub fn add(&mut self, e: syn::Error) {
        self.errors.push(e);
    }

    /// How many errors were recorded: a step compares it before and after itself.
    pub fn count(&self) -> usize {
        self.errors.len()
    }

    /// Ends the collection: `Err` with every error as `compile_error!` tokens, if any.
    pub fn finish(mut self) -> Result<(), TokenStream> {
        self.finished = true;
        match std::mem::take(&mut self.errors) {
            e if e.is_empty() => Ok(()),
            e => Err(e.into_iter().map(|e| e.to_compile_error()).collect()),
        }
    }
}

impl Drop for Errors {
    fn drop(&mut self) {
        if !self.finished && !std::thread::panicking() {
            panic!("grid-macros: errors were collected but never checked (call Errors::finish)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finishing_returns_every_error_recorded() {
        let mut e = Errors::new();
        assert!(Errors::new().finish().is_ok());
        e.push(Span::call_site(), "one");
        e.add(syn::Error::new(Span::call_site(), "two"));
        assert_eq!(e.count(), 2);
        let tokens = e.finish().expect_err("two errors").to_string();
        assert!(tokens.contains("one") && tokens.contains("two"), "{tokens}");
    }

    #[test]
    #[should_panic(expected = "never checked")]
    fn errors_dropped_unchecked_are_a_bug_in_the_macro() {
        let mut e = Errors::new();
        e.push(Span::call_site(), "forgotten");
    }
}
