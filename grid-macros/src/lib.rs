//! Procedural macros for grid. Use them through the `grid` crate (`grid::service`).

use proc_macro::TokenStream;

/// Turns a trait into a grid service (typed client, server dispatch, stable handler ids).
///
/// Code generation is not part of this release: applying the attribute is a compile error
/// that says so, rather than silently producing nothing.
#[proc_macro_attribute]
pub fn service(_args: TokenStream, _item: TokenStream) -> TokenStream {
    "::core::compile_error!(\"#[grid::service] is not available in this release of grid: use Manager::register_single and Connection::request\");"
        .parse()
        .unwrap_or_default()
}
