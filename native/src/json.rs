//! A small, strict JSON scanner for the shapes of the replay hot path.
//!
//! It accepts only what it can decide with certainty and says `None` for anything else (the
//! caller then hands the record to the Python validator, which decides the exact outcome). So it
//! may refuse valid JSON (exponents, nested values, escaped keys), but it never accepts invalid
//! JSON: whitespace is exactly RFC 8259's, strings refuse raw control characters and lone
//! surrogates, integers refuse leading zeros, and every object is checked to its closing brace.

use std::borrow::Cow;

/// `ESC`: the text scanned is JSON written inside a JSON string (a replay envelope's payload,
/// read in place): a quote is the two bytes `\\"`, and any other escape (or a raw quote, the
/// end of the outer string) ends the scan with None, so the caller unescapes and starts over.
pub struct Scan<'a, const ESC: bool = false> {
    b: &'a [u8],
    pub i: usize,
    /// the text may hold control characters (bytes below 0x20), which strings must refuse;
    /// false lets the string loops look for quotes and backslashes only
    ctl: bool,
}

/// A JSON scalar as the hot path needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val<'a> {
    Str(&'a str),
    /// a string with escapes (valid: no lone surrogate), whose text the hot path never reads
    Esc,
    /// an integer in i64 range (at most 18 digits), no fraction, no exponent
    Int(i64),
    /// a plain decimal number (no exponent, at most 17 digits in all): its text
    Num(&'a str),
    Bool,
    Null,
    /// an object (only as a top-level field value: its span is re-scanned by the caller)
    Obj(usize, usize),
}

impl<'a> Scan<'a, true> {
    /// A scanner over the JSON text inside the JSON string starting at `b[i]` (after its quote).
    /// `b` is UTF-8 with no control characters.
    pub fn escaped(b: &'a [u8], i: usize) -> Self {
        Scan { b, i, ctl: false }
    }
}

impl<'a> Scan<'a, false> {
    /// A scanner over UTF-8 text (callers check it: `std::str::from_utf8` or a `&str`).
    pub fn new(b: &'a [u8]) -> Self {
        Scan {
            b,
            i: 0,
            ctl: has_ctl(b),
        }
    }

    /// A scanner over one line: its control characters are only the final newline (common).
    pub fn line(b: &'a [u8]) -> Self {
        let body = b.strip_suffix(b"\n").unwrap_or(b);
        Scan {
            b,
            i: 0,
            ctl: has_ctl(body),
        }
    }

    /// Whether the text may hold control characters.
    pub fn has_ctl(&self) -> bool {
        self.ctl
    }
}

impl<'a, const ESC: bool> Scan<'a, ESC> {
    /// A scanner over the same text, at `i`.
    pub fn at(&self, i: usize) -> Self {
        Scan {
            b: self.b,
            i,
            ctl: self.ctl,
        }
    }

    #[inline]
    pub fn ws(&mut self) {
        while self.i < self.b.len() {
            match self.b[self.i] {
                b' ' | b'\t' | b'\n' | b'\r' => self.i += 1,
                _ => break,
            }
        }
    }

    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    pub fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    pub fn at_end(&mut self) -> bool {
        self.ws();
        self.i == self.b.len()
    }

    /// A string without escapes (the opening quote is next). None on an escape, a raw control
    /// character or the end of input.
    #[inline]
    pub fn plain_str(&mut self) -> Option<&'a str> {
        if ESC {
            return self.esc_str();
        }
        if !self.eat(b'"') {
            return None;
        }
        let start = self.i;
        let b = self.b;
        // strings here are short (ids, names): a plain loop beats a vectorised search
        let mut i = start;
        loop {
            let c = *b.get(i)?;
            if c == b'"' {
                break;
            }
            if c == b'\\' || (self.ctl && c < 0x20) {
                return None;
            }
            i += 1;
        }
        self.i = i + 1;
        // SAFETY: the input is UTF-8 (`Scan::new`'s contract) and quotes are ASCII, so the slice
        // between them is UTF-8 too
        Some(unsafe { std::str::from_utf8_unchecked(&b[start..i]) })
    }

    /// In `ESC` mode: a string `\\"...\\"` whose text has neither quote nor backslash.
    #[inline]
    fn esc_str(&mut self) -> Option<&'a str> {
        let b = self.b;
        if b.get(self.i) != Some(&b'\\') || b.get(self.i + 1) != Some(&b'"') {
            return None;
        }
        let start = self.i + 2;
        let mut i = start;
        loop {
            let c = *b.get(i)?;
            if c == b'\\' {
                if b.get(i + 1) != Some(&b'"') {
                    return None; // another escape: the caller unescapes
                }
                self.i = i + 2;
                // SAFETY: UTF-8 input cut at ASCII bytes
                return Some(unsafe { std::str::from_utf8_unchecked(&b[start..i]) });
            }
            if c == b'"' {
                return None; // the end of the outer string
            }
            i += 1;
        }
    }

    /// A string with escapes resolved (the opening quote is next). None on a lone surrogate, an
    /// unknown escape, a raw control character or the end of input. Also says whether the
    /// text holds control characters (from escapes such as `\\n`).
    pub fn any_str(&mut self) -> Option<Cow<'a, str>> {
        self.any_str_ctl().map(|x| x.0)
    }

    pub fn any_str_ctl(&mut self) -> Option<(Cow<'a, str>, bool)> {
        if ESC {
            return None;
        }
        let save = self.i;
        if let Some(s) = self.plain_str() {
            return Some((Cow::Borrowed(s), false));
        }
        self.i = save;
        if !self.eat(b'"') {
            return None;
        }
        let b = self.b;
        let mut out: Vec<u8> = Vec::with_capacity(b.len() - self.i);
        let mut i = self.i;
        let mut ctl = false;
        loop {
            // byte by byte: escapes are a few bytes apart in a payload, so short copies and
            // vectorised searches cost more than they save (the capacity is never exceeded:
            // unescaping only shortens)
            let c = *b.get(i)?;
            match c {
                b'"' => {
                    self.i = i + 1;
                    // SAFETY: UTF-8 input cut at ASCII bytes, and chars encoded as UTF-8
                    return Some((Cow::Owned(unsafe { String::from_utf8_unchecked(out) }), ctl));
                }
                b'\\' => {}
                _ => {
                    if self.ctl && c < 0x20 {
                        return None;
                    }
                    out.push(c);
                    i += 1;
                    continue;
                }
            }
            {
                {
                    let e = *b.get(i + 1)?;
                    i += 2;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' | b'f' | b'n' | b'r' | b't' => {
                            ctl = true;
                            out.push(match e {
                                b'b' => 8,
                                b'f' => 12,
                                b'n' => b'\n',
                                b'r' => b'\r',
                                _ => b'\t',
                            })
                        }
                        b'u' => {
                            let hi = hex4(b.get(i..i + 4)?)?;
                            i += 4;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
                                    return None; // a lone high surrogate
                                }
                                let lo = hex4(b.get(i + 2..i + 6)?)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                i += 6;
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return None; // a lone low surrogate
                            } else {
                                hi
                            };
                            let ch = char::from_u32(cp)?;
                            ctl |= cp < 0x20;
                            let mut tmp = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                        }
                        _ => return None,
                    }
                }
            }
        }
    }

    /// A JSON integer that fits comfortably in i64 (at most 18 digits). None for a fraction,
    /// an exponent, a leading zero, or more digits.
    pub fn int(&mut self) -> Option<i64> {
        let b = self.b;
        let mut i = self.i;
        let neg = b.get(i) == Some(&b'-');
        if neg {
            i += 1;
        }
        let start = i;
        let mut v: i64 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            v = v * 10 + (b[i] - b'0') as i64;
            i += 1;
            if i - start > 18 {
                return None;
            }
        }
        let n = i - start;
        if n == 0 || (n > 1 && b[start] == b'0') {
            return None;
        }
        if let Some(&c) = b.get(i) {
            if c == b'.' || c == b'e' || c == b'E' {
                return None;
            }
        }
        self.i = i;
        Some(if neg { -v } else { v })
    }

    /// A plain decimal number `-?(0|[1-9][0-9]*)(\.[0-9]+)?` of at most 17 digits (no exponent):
    /// its text. None otherwise.
    pub fn plain_number(&mut self) -> Option<&'a str> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let n_int = i - int_start;
        if n_int == 0 || (n_int > 1 && b[int_start] == b'0') {
            return None;
        }
        let mut digits = n_int;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let f = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == f {
                return None;
            }
            digits += i - f;
        }
        if digits > 17 {
            return None;
        }
        if let Some(&c) = b.get(i) {
            if c == b'e' || c == b'E' || c.is_ascii_digit() {
                return None;
            }
        }
        self.i = i;
        // SAFETY: ASCII digits, '-' and '.'
        Some(unsafe { std::str::from_utf8_unchecked(&b[start..i]) })
    }

    fn lit(&mut self, word: &[u8]) -> bool {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    /// A scalar value (string without escapes, integer, plain number, true/false/null), or, when
    /// `objects` is true, a flat object of such scalars (its span). None for anything else.
    pub fn scalar(&mut self, objects: bool) -> Option<Val<'a>> {
        match self.peek()? {
            b'"' if !ESC => {
                let save = self.i;
                if let Some(s) = self.plain_str() {
                    return Some(Val::Str(s));
                }
                self.i = save;
                self.any_str().map(|_| Val::Esc)
            }
            b'\\' if ESC => self.esc_str().map(Val::Str),
            b'n' => self.lit(b"null").then_some(Val::Null),
            b't' => self.lit(b"true").then_some(Val::Bool),
            b'f' => self.lit(b"false").then_some(Val::Bool),
            b'{' if objects => {
                let start = self.i;
                // a flat object: checked here, re-read by the caller with `fields`
                let mut seen: [&str; 8] = [""; 8];
                let mut n = 0;
                self.i += 1;
                self.ws();
                if !self.eat(b'}') {
                    loop {
                        self.ws();
                        let k = self.plain_str()?;
                        if seen[..n].contains(&k) || n == seen.len() {
                            return None; // a repeated key, or too many
                        }
                        seen[n] = k;
                        n += 1;
                        self.ws();
                        if !self.eat(b':') {
                            return None;
                        }
                        self.ws();
                        self.scalar(false)?;
                        self.ws();
                        if self.eat(b',') {
                            continue;
                        }
                        if self.eat(b'}') {
                            break;
                        }
                        return None;
                    }
                }
                Some(Val::Obj(start, self.i))
            }
            b'-' | b'0'..=b'9' => {
                let save = self.i;
                if let Some(v) = self.int() {
                    return Some(Val::Int(v));
                }
                self.i = save;
                self.plain_number().map(Val::Num)
            }
            _ => None,
        }
    }

    /// The fields of a flat object whose keys are plain strings: calls `f(key, value)` for each;
    /// None when the object is not of that shape or has a repeated key.
    pub fn fields<F: FnMut(&'a str, Val<'a>) -> Option<()>>(
        &mut self,
        objects: bool,
        mut f: F,
    ) -> Option<()> {
        self.ws();
        if !self.eat(b'{') {
            return None;
        }
        self.ws();
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            self.ws();
            let k = self.plain_str()?;
            self.ws();
            if !self.eat(b':') {
                return None;
            }
            self.ws();
            let v = self.scalar(objects)?;
            f(k, v)?;
            self.ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b'}') {
                return Some(());
            }
            return None;
        }
    }
}

/// Whether any byte is a control character (below 0x20); written without early exit so that it
/// compiles to vector instructions.
#[inline]
pub fn has_ctl(b: &[u8]) -> bool {
    b.iter().fold(0u8, |a, &c| a | (c < 0x20) as u8) != 0
}

fn hex4(h: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in h {
        v = v * 16
            + match c {
                b'0'..=b'9' => (c - b'0') as u32,
                b'a'..=b'f' => (c - b'a' + 10) as u32,
                b'A'..=b'F' => (c - b'A' + 10) as u32,
                _ => return None,
            };
    }
    Some(v)
}
