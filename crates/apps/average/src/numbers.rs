//! The files' formats and the arithmetic, kept pure so they are tested and benchmarked alone.
//!
//! - Input files: integers 1 to 100 as ASCII, separated by single spaces, ending in a newline
//!   (the original's format). Any ASCII whitespace separates on reading.
//! - Partial sums: one byte giving the width of every sum (2, 4 or 8 bytes: the least that
//!   holds the largest), then the element-wise sums as little-endian integers of that
//!   width; exact, and read back without parsing. Five files of 1 to 100 sum to at most
//!   500, and 625 files to at most 62,500: on the benchmark all partial files but the last
//!   level's take 2 bytes a sum, a quarter of the bytes of `u64` to write and to read.
//! - The output: the per-position averages, shortest round-trip decimal form, one space
//!   apart, ending in a newline.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Largest value an input may hold: keeps any sum of up to 100,000 files within `u64`.
pub const VALUE_MAX: u64 = 1_000_000_000_000;

/// File `index` of a job seeded `seed`: `entries` integers from 1 to 100.
pub fn generate(seed: u64, index: u64, entries: usize) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut out = Vec::with_capacity(entries * 3);
    for n in 0..entries {
        if n > 0 {
            out.push(b' ');
        }
        let value: u8 = rng.random_range(1..=100);
        if value == 100 {
            out.extend_from_slice(b"100");
        } else if value >= 10 {
            out.push(b'0' + value / 10);
            out.push(b'0' + value % 10);
        } else {
            out.push(b'0' + value);
        }
    }
    out.push(b'\n');
    out
}

/// Adds the integers of an input file into `sums`, which must be exactly as long as the
/// file has integers. The error names the problem and where it is.
///
/// The files this app writes hold numbers of one to three digits, each followed by one
/// space or the final newline; those are read four bytes at a time, with no loop over the
/// digits (30 % less time than byte by byte on this app's benchmark files, measured with a
/// throwaway harness: 29.5 → 20.5 ms for the 1,000 files, one thread). Whatever else
/// comes (longer numbers, runs of whitespace, a bad byte, the last three bytes) is read by
/// the careful loop, from the number where the fast one stopped.
pub fn add_text(bytes: &[u8], sums: &mut [u64]) -> Result<(), String> {
    let (mut offset, mut count) = (0, 0);
    while count < sums.len()
        && let Some(&[a, b, c, d]) = bytes.get(offset..offset + 4)
    {
        let digit = |byte: u8| u64::from(byte.wrapping_sub(b'0'));
        let (da, db, dc) = (digit(a), digit(b), digit(c));
        let (value, used) = if da > 9 {
            break;
        } else if b.is_ascii_whitespace() {
            (da, 2)
        } else if db <= 9 && c.is_ascii_whitespace() {
            (da * 10 + db, 3)
        } else if db <= 9 && dc <= 9 && d.is_ascii_whitespace() {
            (da * 100 + db * 10 + dc, 4)
        } else {
            break;
        };
        sums[count] += value;
        count += 1;
        offset += used;
    }
    add_text_carefully(bytes, offset, count, sums)
}

/// [`add_text`] byte by byte, from `start`, where `count` numbers have been added.
fn add_text_carefully(
    bytes: &[u8],
    start: usize,
    mut count: usize,
    sums: &mut [u64],
) -> Result<(), String> {
    let mut value = 0u64;
    let mut digits = 0u32;
    for (offset, &byte) in bytes.iter().enumerate().skip(start) {
        if byte.is_ascii_digit() {
            value = value * 10 + u64::from(byte - b'0');
            digits += 1;
            if value > VALUE_MAX {
                return Err(format!("a number above {VALUE_MAX} at byte {offset}"));
            }
        } else if byte.is_ascii_whitespace() {
            if digits > 0 {
                let Some(slot) = sums.get_mut(count) else {
                    return Err(format!("more than the expected {} numbers", sums.len()));
                };
                *slot += value;
                count += 1;
                value = 0;
                digits = 0;
            }
        } else {
            return Err(format!("unexpected byte 0x{byte:02x} at byte {offset}"));
        }
    }
    if digits > 0 {
        let Some(slot) = sums.get_mut(count) else {
            return Err(format!("more than the expected {} numbers", sums.len()));
        };
        *slot += value;
        count += 1;
    }
    if count != sums.len() {
        return Err(format!(
            "{count} numbers where {} were expected (truncated?)",
            sums.len()
        ));
    }
    Ok(())
}

/// Adds a partial-sum file ([`encode_sums`]) into `sums`.
pub fn add_binary(bytes: &[u8], sums: &mut [u64]) -> Result<(), String> {
    let (width, body) = match bytes.split_first() {
        Some((&width, body)) if matches!(width, 2 | 4 | 8) => (usize::from(width), body),
        _ => return Err("not a partial sum file: its first byte is no width".to_owned()),
    };
    if body.len() != sums.len() * width {
        return Err(format!(
            "{} bytes where a partial sum of {} entries of {width} bytes has {}",
            bytes.len(),
            sums.len(),
            1 + sums.len() * width
        ));
    }
    match width {
        2 => add_each(body, sums, u16::from_le_bytes),
        4 => add_each(body, sums, u32::from_le_bytes),
        _ => add_each(body, sums, u64::from_le_bytes),
    }
}

/// Adds the little-endian integers of `N` bytes in `body` into `sums`. The overflow
/// check is one flag for the whole file, so that the loop compiles to vector instructions;
/// after an overflow `sums` are garbage, which the error says.
fn add_each<const N: usize, T: Into<u64>>(
    body: &[u8],
    sums: &mut [u64],
    decode: fn([u8; N]) -> T,
) -> Result<(), String> {
    let mut overflowed = false;
    for (sum, chunk) in sums.iter_mut().zip(body.chunks_exact(N)) {
        let value = decode(chunk.try_into().expect("N bytes")).into();
        let (total, overflow) = sum.overflowing_add(value);
        *sum = total;
        overflowed |= overflow;
    }
    if overflowed {
        return Err("a sum overflowed 64 bits".to_owned());
    }
    Ok(())
}

/// A partial-sum file's bytes, written over `bytes`: the width, then the sums.
pub fn encode_sums(sums: &[u64], bytes: &mut Vec<u8>) {
    let largest = sums.iter().copied().max().unwrap_or(0);
    let width = if u16::try_from(largest).is_ok() {
        2
    } else if u32::try_from(largest).is_ok() {
        4
    } else {
        8
    };
    bytes.clear();
    bytes.resize(1 + sums.len() * width, 0);
    bytes[0] = width as u8;
    let body = &mut bytes[1..];
    // One loop per width over fixed-size chunks, so each compiles to vector instructions.
    match width {
        2 => put_each(body, sums, |sum| (sum as u16).to_le_bytes()),
        4 => put_each(body, sums, |sum| (sum as u32).to_le_bytes()),
        _ => put_each(body, sums, u64::to_le_bytes),
    }
}

fn put_each<const N: usize>(body: &mut [u8], sums: &[u64], encode: fn(u64) -> [u8; N]) {
    for (chunk, &sum) in body.chunks_exact_mut(N).zip(sums) {
        chunk.copy_from_slice(&encode(sum));
    }
}

/// The averages of `sums` over `files`, as the output file's text, and the overall mean.
pub fn averages(sums: &[u64], files: u64) -> (String, f64) {
    use std::fmt::Write;
    let mut text = String::with_capacity(sums.len() * 6);
    let mut total: u128 = 0;
    for (n, &sum) in sums.iter().enumerate() {
        if n > 0 {
            text.push(' ');
        }
        let _ = write!(text, "{}", sum as f64 / files as f64);
        total += u128::from(sum);
    }
    text.push('\n');
    let mean = total as f64 / (files as f64 * sums.len() as f64);
    (text, mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_parse_back_with_values_in_range() {
        let file = generate(7, 3, 1000);
        assert_eq!(file, generate(7, 3, 1000), "same seed and index, same file");
        assert_ne!(file, generate(7, 4, 1000));
        let mut sums = vec![0; 1000];
        add_text(&file, &mut sums).unwrap();
        assert!(sums.iter().all(|v| (1..=100).contains(v)));
        assert!(sums.contains(&1) && sums.contains(&100), "both ends appear");
    }

    #[test]
    fn text_errors_name_the_problem() {
        let mut sums = vec![0; 3];
        add_text(b"1 2 3\n", &mut sums).unwrap();
        assert_eq!(sums, [1, 2, 3]);
        add_text(b" 10\t20\n30 ", &mut sums).unwrap();
        assert_eq!(sums, [11, 22, 33]);
        assert!(
            add_text(b"1 2", &mut sums)
                .unwrap_err()
                .contains("truncated")
        );
        assert!(
            add_text(b"1 2 3 4", &mut sums)
                .unwrap_err()
                .contains("more than")
        );
        assert!(
            add_text(b"1 -2 3", &mut sums)
                .unwrap_err()
                .contains("byte 2")
        );
        assert!(
            add_text(b"1 2 99999999999999", &mut sums)
                .unwrap_err()
                .contains("above")
        );
        let huge = format!("1 2 {}", "9".repeat(40));
        let error = add_text(huge.as_bytes(), &mut sums).unwrap_err();
        assert!(error.contains("above"), "{error}");
        let error = add_text(b"1 2 3x", &mut sums).unwrap_err();
        assert!(error.contains("byte 5"), "{error}");
        let error = add_text(b"", &mut sums).unwrap_err();
        assert!(error.contains("0 numbers"), "{error}");
    }

    #[test]
    fn the_fast_reader_agrees_with_the_careful_one_on_every_shape() {
        let inputs: [&[u8]; 12] = [
            b"5 10 100 7 8\n",
            b"5 10 100 7 8",
            b"5\t10\n100\r\n7 8 ",
            b"5 10 1000 7 8\n",
            b"  5 10 100 7 8\n",
            b"5  10 100 7 8\n",
            b"5 10 100 7 8 9\n",
            b"5 10 100 7\n",
            b"5 10 1x0 7 8\n",
            b"5 10 100 7 -8\n",
            b"5 10 0100 7 8\n",
            b"5 10 99999999999999 7 8\n",
        ];
        for input in inputs {
            let (mut fast, mut careful) = (vec![1; 5], vec![1; 5]);
            let fast_result = add_text(input, &mut fast);
            let careful_result = add_text_carefully(input, 0, 0, &mut careful);
            let shown = String::from_utf8_lossy(input);
            assert_eq!(fast_result, careful_result, "{shown:?}");
            if fast_result.is_ok() {
                assert_eq!(fast, careful, "{shown:?}");
            }
        }
        let file = generate(11, 0, 5000);
        let (mut fast, mut careful) = (vec![0; 5000], vec![0; 5000]);
        add_text(&file, &mut fast).unwrap();
        add_text_carefully(&file, 0, 0, &mut careful).unwrap();
        assert_eq!(fast, careful);
    }

    #[test]
    fn partial_sums_round_trip_in_the_least_width_and_check_their_length() {
        let mut bytes = vec![9; 3];
        for (largest, width) in [
            (0, 2),
            (500, 2),
            (u64::from(u16::MAX), 2),
            (u64::from(u16::MAX) + 1, 4),
            (u64::from(u32::MAX), 4),
            (u64::from(u32::MAX) + 1, 8),
            (u64::MAX - 6, 8),
        ] {
            let mut sums = vec![5, 6];
            encode_sums(&[1, largest], &mut bytes);
            assert_eq!((bytes[0], bytes.len()), (width, 1 + 2 * width as usize));
            add_binary(&bytes, &mut sums).unwrap();
            assert_eq!(sums, [6, 6 + largest], "width {width}");
        }
        let mut sums = vec![5, 6];
        let error = add_binary(&[2, 0, 0, 0], &mut sums).unwrap_err();
        assert!(
            error.contains("4 bytes where") && error.contains("has 5"),
            "{error}"
        );
        for bad in [&[][..], &[3, 0, 0, 0, 0, 0, 0], b"1 2"] {
            let error = add_binary(bad, &mut sums).unwrap_err();
            assert!(error.contains("no width"), "{error}");
        }
        assert!(
            add_binary(
                &[
                    8, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0
                ],
                &mut sums
            )
            .unwrap_err()
            .contains("overflowed")
        );
    }

    #[test]
    fn averages_are_exact_quotients() {
        let (text, mean) = averages(&[3, 4, 300], 2);
        assert_eq!(text, "1.5 2 150\n");
        assert!((mean - 307.0 / 6.0).abs() < 1e-12);
    }
}
