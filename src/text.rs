//! Text written piece by piece, for the words built on every review (the deny message, log
//! fields): a `write!` parses its format and pads each argument through `core::fmt`, which
//! costs more than the text it writes.

use std::fmt::{self, Write};

/// A value written as text into any [`fmt::Write`]: a `String` directly, or a `Formatter`
/// where it is shown with `{}`.
pub trait Words {
    fn write_to<W: Write>(&self, w: &mut W) -> fmt::Result;

    fn text(&self) -> String {
        let mut text = String::new();
        let _ = self.write_to(&mut text);
        text
    }
}

/// Writes `parts` one after the other.
pub fn put<W: Write>(w: &mut W, parts: &[&str]) -> fmt::Result {
    parts.iter().try_for_each(|part| w.write_str(part))
}

/// Writes `n` in decimal.
pub fn number<W: Write>(w: &mut W, n: u64) -> fmt::Result {
    w.write_str(decimal(n, &mut [0; 20]))
}

/// `n` in decimal.
fn decimal(n: u64, buf: &mut [u8; 20]) -> &str {
    let len = n.checked_ilog10().map_or(1, |log| log as usize + 1);
    digits(&mut buf[..len], n);
    std::str::from_utf8(&buf[..len]).unwrap_or_default()
}

/// `n` in decimal, zero-padded to fill `out`.
pub fn digits(out: &mut [u8], mut n: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_display_writes_them() {
        for n in [0, 9, 10, 99, 100, 65_535, u64::from(u32::MAX), u64::MAX] {
            let mut text = String::new();
            number(&mut text, n).unwrap();
            assert_eq!(text, n.to_string());
        }
    }

    #[test]
    fn parts_are_written_in_order() {
        let mut text = String::from(">");
        put(&mut text, &["a", "", "/", "b"]).unwrap();
        assert_eq!(text, ">a/b");
    }
}
