//! What the fuzz targets share: [`Source`], which turns the fuzzer's bytes into the inputs an
//! outsider could send (text biased towards the characters that mean something in a key, a
//! pattern or a URL), and [`reference`], small and obviously correct implementations the
//! targets compare the library with.
//!
//! The targets themselves are the tests of this crate (`tests/targets/`), driven by
//! [bolero](https://docs.rs/bolero): `cargo test -p model-cache-fuzz` runs a short version of
//! each, `BOLERO_RANDOM_ITERATIONS=1000000 cargo test -p model-cache-fuzz --release` the long
//! one (see the README's "Fuzzing" section).
#![warn(missing_docs)]

pub mod reference;

/// Characters that mean something in a store key, a key pattern or a URL: picked often.
const SPECIAL: &[char] = &[
    ':', '*', '?', '[', ']', '{', '}', '\\', '%', '&', '=', '^', '-', '/', '#', '+', ',', '.', '"', '\'', ';', '@',
    '!', '~', '<', '>', '|', '$', '(', ')', '_', '`',
];

/// Whitespace and control characters, ASCII and not: no key may hold them raw.
const SPACE_AND_CONTROL: &[char] = &[
    ' ', '\t', '\n', '\r', '\0', '\u{b}', '\u{c}', '\u{1f}', '\u{7f}', '\u{85}', '\u{a0}', '\u{1680}', '\u{2028}',
    '\u{2029}', '\u{3000}', '\u{feff}', '\u{200b}', '\u{9f}',
];

/// Characters whose UTF-8 takes several bytes, or whose lowercase has another length.
const WIDE: &[char] = &[
    'é',
    'ß',
    'İ',
    '\u{212a}',
    'ẞ',
    'Σ',
    'ς',
    '\u{10ffff}',
    '😀',
    '\u{fffd}',
    'ﬃ',
    'Å',
    '\u{0301}',
    '한',
    'ǅ',
    '\u{e000}',
];

/// Letters and digits, so that plausible ids and names come up too.
const PLAIN: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Reads the fuzzer's bytes as a sequence of choices. When the bytes run out every choice is
/// the first one (zero), so every input, however short, decodes to something.
///
/// ```
/// use model_cache_fuzz::Source;
///
/// let mut source = Source::new(&[3, 200, 7]);
/// assert_eq!(source.below(10), 3);
/// assert!(!source.is_empty());
/// let _ = source.text(8);
/// assert!(source.is_empty());
/// assert_eq!(source.byte(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct Source<'a> {
    bytes: &'a [u8],
}

impl<'a> Source<'a> {
    /// Reads `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes not read yet, all of them (the source is then empty).
    pub fn take_rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    /// The next byte, `0` once the bytes are exhausted.
    pub fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    /// The next `n` bytes (fewer when fewer are left).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.bytes.split_at(n.min(self.bytes.len()));
        self.bytes = rest;
        head
    }

    /// A number in `0..n` (`0` when `n` is 0), from one byte, or two when `n > 256`.
    pub fn below(&mut self, n: usize) -> usize {
        let raw = if n > 256 {
            usize::from(u16::from_le_bytes([self.byte(), self.byte()]))
        } else {
            usize::from(self.byte())
        };
        raw % n.max(1)
    }

    /// True about once in `n` times (false once the bytes are exhausted).
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) + 1 == n.max(1)
    }

    /// One of `items` (non-empty).
    pub fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.below(items.len())]
    }

    /// A character: most often one that means something in a key, a pattern or a URL.
    pub fn char(&mut self) -> char {
        match self.byte() {
            // Every printable ASCII character and DEL.
            b @ 0..=95 => char::from(0x20 + b),
            96..=143 => *self.pick(SPECIAL),
            144..=183 => char::from(*self.pick(PLAIN)),
            184..=207 => *self.pick(SPACE_AND_CONTROL),
            208..=231 => *self.pick(WIDE),
            _ => {
                let raw = u32::from_le_bytes([self.byte(), self.byte(), self.byte(), 0]) % 0x11_0000;
                char::from_u32(raw).unwrap_or('\u{fffd}')
            }
        }
    }

    /// A string of at most `max_chars` characters of [`Source::char`].
    pub fn text(&mut self, max_chars: usize) -> String {
        let len = self.below(max_chars + 1);
        (0..len).map(|_| self.char()).collect()
    }

    /// A string of at most `max_chars` letters and digits.
    pub fn plain(&mut self, max_chars: usize) -> String {
        let len = self.below(max_chars + 1);
        (0..len).map(|_| char::from(*self.pick(PLAIN))).collect()
    }

    /// A `u64`, often at an edge: 0, 1, small, around `i64::MAX`, `u64::MAX`.
    pub fn edgy_u64(&mut self) -> u64 {
        let mut raw = [0u8; 8];
        match self.below(8) {
            0 => 0,
            1 => 1,
            2 => self.below(64) as u64,
            3 => i64::MAX as u64 - self.below(3) as u64 + 1,
            4 => u64::MAX - self.below(3) as u64,
            5 => (usize::MAX - self.below(3)) as u64,
            _ => {
                for b in &mut raw {
                    *b = self.byte();
                }
                u64::from_le_bytes(raw)
            }
        }
    }

    /// An `i64`, often at an edge.
    pub fn edgy_i64(&mut self) -> i64 {
        match self.below(4) {
            0 => i64::MIN + self.below(3) as i64,
            1 => -(self.below(64) as i64),
            _ => self.edgy_u64() as i64,
        }
    }

    /// A `usize`, often at an edge.
    pub fn edgy_usize(&mut self) -> usize {
        match self.below(4) {
            0 => usize::MAX - self.below(3),
            _ => usize::try_from(self.edgy_u64()).unwrap_or(usize::MAX),
        }
    }
}
