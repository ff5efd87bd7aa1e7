//! Compile-time checks of `#[grid::service]` and `grid::services!`: each failing case's
//! message and span are pinned in its `.stderr` file.

#[test]
fn service_macro_ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
