//! Byte sizes in attributes: `max_window = 65536` or `max_window = "1MiB"`.

use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit};

use crate::errors::Errors;

/// The smallest and largest window a method may set (a window is a u32 on the wire).
const MIN: u64 = 1024;
const MAX: u64 = u32::MAX as u64;

/// Reads a size: an integer literal (bytes) or a string of digits with an optional unit
/// (`B`, `KiB`, `MiB`, `GiB`, or the decimal `KB`, `MB`, `GB`).
pub fn size_value(expr: &Expr, errors: &mut Errors, what: &str) -> Option<u64> {
    let hint = format!(
        "{what} must be a size in bytes such as 65536, \"256KiB\" or \"1MiB\", from 1 KiB to 4 GiB - 1"
    );
    let value = match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse::<u64>().ok(),
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => parse(&s.value()),
        _ => None,
    };
    match value {
        Some(v) if (MIN..=MAX).contains(&v) => Some(v),
        _ => {
            errors.push(expr.span(), hint);
            None
        }
    }
}

fn parse(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let unit: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn sizes_read_their_units() {
        assert_eq!(parse("1MiB"), Some(1 << 20));
        assert_eq!(parse("256 KiB"), Some(256 << 10));
        assert_eq!(parse("64KB"), Some(64_000));
        assert_eq!(parse("4096"), Some(4096));
        assert_eq!(parse("1.5MiB"), None);
        assert_eq!(parse("MiB"), None);
        assert_eq!(parse("1 TiB"), None);
    }
}
