//! Version strings (kernel versions, boot entries' `version`) compared as
//! systemd compares them. Pure; used by `sysroot` (boot order) and
//! `compose` (the kernels of a tree).

use std::cmp::Ordering;

/// Version comparison as systemd's `strverscmp_improved()` does it for
/// the strings Slate writes and most others: runs of digits compare as
/// numbers, everything else byte by byte.
pub fn strverscmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let si = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let na = trim_zeros(&a[si..i]);
            let nb = trim_zeros(&b[sj..j]);
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            let o = a[i].cmp(&b[j]);
            if o != Ordering::Equal {
                return o;
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|&&c| c == b'0').count();
    &d[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_compare_as_numbers() {
        assert_eq!(strverscmp("10", "9"), Ordering::Greater);
        assert_eq!(strverscmp("1.10", "1.9"), Ordering::Greater);
        assert_eq!(strverscmp("6.1.0-13", "6.1.0-9"), Ordering::Greater);
        assert_eq!(strverscmp("007", "7"), Ordering::Equal);
        assert_eq!(strverscmp("a", "a"), Ordering::Equal);
        assert_eq!(strverscmp("a1", "a"), Ordering::Greater);
    }
}
