//! Pure byte-level helpers for uploads and downloads: what a file really is (magic numbers),
//! `multipart/form-data` bodies, and `Range` headers.

use sha2::{Digest, Sha256};

/// The content types an upload may have, as sniffed from its bytes.
pub const ALLOWED: [&str; 7] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "text/csv",
];

/// What the bytes are: a binary format by its magic number, or UTF-8 text without NULs.
/// `declared` only chooses between the text types (CSV is text).
pub fn sniff(bytes: &[u8], declared: &str) -> Option<&'static str> {
    let starts = |m: &[u8]| bytes.starts_with(m);
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Some("image/png");
    }
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Some("image/jpeg");
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Some("image/gif");
    }
    if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WEBP" {
        return Some("image/webp");
    }
    if starts(b"%PDF-") {
        return Some("application/pdf");
    }
    if !bytes.is_empty() && !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok() {
        return Some(if essence(declared) == "text/csv" {
            "text/csv"
        } else {
            "text/plain"
        });
    }
    None
}

/// Formats WhatsApp delivers that uploads do not take (voice notes, videos, office files), by
/// magic number, for inbound media: stored with this type, never trusted from the sender.
pub fn sniff_inbound(bytes: &[u8]) -> Option<&'static str> {
    let starts = |m: &[u8]| bytes.starts_with(m);
    if starts(b"OggS") {
        return Some("audio/ogg");
    }
    if starts(b"#!AMR") {
        return Some("audio/amr");
    }
    if starts(b"ID3") || (bytes.len() >= 2 && bytes[0] == 0xFF && bytes[1] & 0xE6 == 0xE2) {
        return Some("audio/mpeg");
    }
    if bytes.len() >= 2 && bytes[0] == 0xFF && bytes[1] & 0xF6 == 0xF0 {
        return Some("audio/aac");
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return Some(if bytes[8..11].eq_ignore_ascii_case(b"3gp") {
            "video/3gpp"
        } else {
            "video/mp4"
        });
    }
    if starts(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some("video/webm");
    }
    if starts(b"PK\x03\x04") {
        return Some("application/zip");
    }
    None
}

/// `sniff` on the first bytes of a file (`whole` = false) or all of it: a prefix may end inside
/// a UTF-8 character, so text is judged by its complete characters.
pub fn sniff_prefix(bytes: &[u8], declared: &str, whole: bool) -> Option<&'static str> {
    let complete = match std::str::from_utf8(bytes) {
        Err(e) if !whole && e.error_len().is_none() => &bytes[..e.valid_up_to()],
        _ => bytes,
    };
    sniff(complete, declared)
}

/// Checks text that arrives in chunks: UTF-8 without NULs, whatever the chunk boundaries.
#[derive(Debug, Clone, Default)]
pub struct TextCheck {
    /// The start of a character the last chunk cut.
    carry: Vec<u8>,
    broken: bool,
}

impl TextCheck {
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.broken {
            return;
        }
        if chunk.contains(&0) {
            self.broken = true;
            return;
        }
        let mut joined = std::mem::take(&mut self.carry);
        joined.extend_from_slice(chunk);
        match std::str::from_utf8(&joined) {
            Ok(_) => {}
            Err(e) if e.error_len().is_none() => self.carry = joined[e.valid_up_to()..].to_vec(),
            Err(_) => self.broken = true,
        }
    }

    /// Whether everything fed so far is text, ending on a whole character.
    pub fn is_text(&self) -> bool {
        !self.broken && self.carry.is_empty()
    }
}

/// What reading a file through establishes: its sha256 and, for text, that it stays text to
/// the end. Fed chunk by chunk, so the file is never held whole.
#[derive(Debug, Clone)]
pub struct FileDigest {
    hasher: Sha256,
    text: Option<TextCheck>,
}

impl FileDigest {
    /// For a file whose first bytes were sniffed as `content_type`.
    pub fn new(content_type: &str) -> FileDigest {
        FileDigest {
            hasher: Sha256::new(),
            text: content_type.starts_with("text/").then(TextCheck::default),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        if let Some(text) = self.text.as_mut() {
            text.feed(chunk);
        }
    }

    /// The hex sha256, or `None` when a text file turned out not to be text.
    pub fn finish(self) -> Option<String> {
        if self.text.is_some_and(|t| !t.is_text()) {
            return None;
        }
        Some(hex::encode(self.hasher.finalize()))
    }
}

/// `type/subtype` of a Content-Type, lower case, without parameters.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether a declared type agrees with the sniffed one (`image/jpg` is JPEG; a generic
/// `application/octet-stream` or nothing defers to the bytes).
pub fn declared_matches(declared: &str, sniffed: &str) -> bool {
    let d = essence(declared);
    d.is_empty()
        || d == "application/octet-stream"
        || d == sniffed
        || (d == "image/jpg" && sniffed == "image/jpeg")
        || (sniffed.starts_with("text/") && d.starts_with("text/"))
}

#[derive(Debug, PartialEq)]
pub struct Part<'a> {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: &'a [u8],
}

fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("boundary")).then(|| v.trim().trim_matches('"').to_string())
    })
}

fn param(header: &str, key: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(key)).then(|| v.trim().trim_matches('"').to_string())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| &hay[i..i + needle.len()] == needle)
}

/// Splits a `multipart/form-data` body into its parts.
pub fn multipart<'a>(content_type: &str, body: &'a [u8]) -> Result<Vec<Part<'a>>, String> {
    let b = boundary(content_type).ok_or("the multipart body has no boundary")?;
    let delim = format!("--{b}");
    let mut pos = find(body, delim.as_bytes(), 0).ok_or("the multipart body has no parts")?;
    let mut parts = Vec::new();
    loop {
        pos += delim.len();
        if body[pos..].starts_with(b"--") {
            break;
        }
        let head_start = pos
            + if body[pos..].starts_with(b"\r\n") {
                2
            } else {
                0
            };
        let head_end = find(body, b"\r\n\r\n", head_start).ok_or("a part has no headers")?;
        let head = std::str::from_utf8(&body[head_start..head_end])
            .map_err(|_| "part headers are not UTF-8")?;
        let next = find(body, format!("\r\n{delim}").as_bytes(), head_end + 4)
            .ok_or("the multipart body is not terminated")?;
        let mut name = None;
        let mut filename = None;
        let mut ctype = None;
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(':').unwrap_or((line, ""));
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                name = param(v, "name");
                filename = param(v, "filename");
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                ctype = Some(v.trim().to_string());
            }
        }
        parts.push(Part {
            name: name.ok_or("a part has no name")?,
            filename,
            content_type: ctype,
            data: &body[head_end + 4..next],
        });
        pos = next + 2;
    }
    Ok(parts)
}

/// A `Range` that cannot be served from a file of this size (answered 416).
#[derive(Debug, PartialEq)]
pub struct Unsatisfiable;

/// A satisfiable single byte range: `(offset, length)`. `Ok(None)` means no (usable) Range
/// header, serve everything.
pub fn range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Several ranges would need multipart/byteranges; the whole body is a valid answer.
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", "") => return Err(Unsatisfiable),
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| Unsatisfiable)?;
            if n == 0 {
                return Err(Unsatisfiable);
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (s, "") => (
            s.parse().map_err(|_| Unsatisfiable)?,
            size.saturating_sub(1),
        ),
        (s, e) => {
            let s: u64 = s.parse().map_err(|_| Unsatisfiable)?;
            let e: u64 = e.parse().map_err(|_| Unsatisfiable)?;
            (s, e.min(size.saturating_sub(1)))
        }
    };
    if size == 0 || start >= size || end < start {
        return Err(Unsatisfiable);
    }
    Ok(Some((start, end - start + 1)))
}

/// A `Content-Disposition` value for `filename`: an ASCII `filename` (non-ASCII characters,
/// quotes and backslashes become `_`) that every client reads, plus RFC 6266's
/// `filename*=UTF-8''…` with the exact name when it is not plain ASCII — header values must
/// be ASCII, so a raw UTF-8 name there is refused by browsers (and by the runtime).
pub fn content_disposition(disposition: &str, filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if filename.is_ascii() && fallback == filename {
        return format!("{disposition}; filename=\"{fallback}\"");
    }
    let mut encoded = String::new();
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn non_ascii_names_get_an_ascii_fallback_and_an_encoded_utf8_name() {
        use super::content_disposition as cd;
        assert_eq!(cd("inline", "list.csv"), "inline; filename=\"list.csv\"");
        assert_eq!(
            cd("attachment", "prix été.csv"),
            "attachment; filename=\"prix _t_.csv\"; filename*=UTF-8''prix%20%C3%A9t%C3%A9.csv"
        );
        assert_eq!(
            cd("inline", "日本.pdf"),
            "inline; filename=\"__.pdf\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.pdf"
        );
        // Quotes and backslashes cannot break out of the quoted fallback.
        assert_eq!(
            cd("inline", "a\"b\\c.txt"),
            "inline; filename=\"a_b_c.txt\"; filename*=UTF-8''a%22b%5Cc.txt"
        );
        assert!(cd("inline", "ü\u{1F600}.png").is_ascii());
    }

    use super::*;

    #[test]
    fn inbound_voice_notes_and_videos_are_told_by_their_bytes() {
        assert_eq!(sniff_inbound(b"OggS\x00\x02rest"), Some("audio/ogg"));
        assert_eq!(
            sniff_inbound(b"\x00\x00\x00\x18ftypmp42\x00\x00"),
            Some("video/mp4")
        );
        assert_eq!(
            sniff_inbound(b"\x00\x00\x00\x18ftyp3gp4\x00\x00"),
            Some("video/3gpp")
        );
        assert_eq!(sniff_inbound(b"ID3\x04"), Some("audio/mpeg"));
        assert_eq!(sniff_inbound(b"PK\x03\x04word"), Some("application/zip"));
        assert_eq!(sniff_inbound(b"<html>"), None);
    }

    #[test]
    fn a_digest_hashes_any_file_and_refuses_text_that_stops_being_text() {
        let mut png = FileDigest::new("image/png");
        png.feed(b"\x89PNG\0");
        png.feed(b"\xff");
        let mut whole = Sha256::new();
        whole.update(b"\x89PNG\0\xff");
        assert_eq!(png.finish(), Some(hex::encode(whole.finalize())));
        let mut csv = FileDigest::new("text/csv");
        csv.feed(b"a,b\n");
        csv.feed(b"\0");
        assert_eq!(csv.finish(), None);
    }

    #[test]
    fn text_checked_in_chunks_survives_cut_characters_and_catches_bad_bytes_anywhere() {
        let text = "Crème brûlée, 4,50 €\n".repeat(50);
        for size in [1, 2, 3, 7, 64] {
            let mut check = TextCheck::default();
            for chunk in text.as_bytes().chunks(size) {
                check.feed(chunk);
            }
            assert!(check.is_text(), "chunks of {size}");
        }
        let mut late_nul = TextCheck::default();
        late_nul.feed(b"name,price\n");
        late_nul.feed(b"a\0b");
        assert!(!late_nul.is_text());
        let mut bad = TextCheck::default();
        bad.feed(b"ok ");
        bad.feed(b"\xff\xfe");
        assert!(!bad.is_text());
        let mut cut_at_end = TextCheck::default();
        cut_at_end.feed(&"é".as_bytes()[..1]);
        assert!(!cut_at_end.is_text());
    }

    #[test]
    fn a_prefix_cut_inside_a_character_is_still_text_but_a_whole_file_is_not() {
        let cut = &"brûlée".as_bytes()[..3];
        assert_eq!(sniff_prefix(cut, "text/csv", false), Some("text/csv"));
        assert_eq!(sniff_prefix(cut, "text/csv", true), None);
        assert_eq!(sniff_prefix(b"\xff\xfe", "text/plain", false), None);
    }

    #[test]
    fn files_are_what_their_bytes_say() {
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n....", "image/png"),
            Some("image/png")
        );
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0], ""), Some("image/jpeg"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ", ""), Some("image/webp"));
        assert_eq!(
            sniff(b"%PDF-1.4\n", "application/pdf"),
            Some("application/pdf")
        );
        assert_eq!(
            sniff(b"name,price\nmug,12.50\n", "text/csv"),
            Some("text/csv")
        );
        assert_eq!(sniff("Grüße".as_bytes(), "text/plain"), Some("text/plain"));
        assert_eq!(sniff(b"MZ\x90\0\x03", "image/png"), None);
        assert_eq!(sniff(&[0xC3, 0x28], "text/plain"), None);
        assert!(declared_matches("image/jpg", "image/jpeg"));
        assert!(declared_matches("", "application/pdf"));
        assert!(!declared_matches("image/png", "application/pdf"));
        assert!(!declared_matches("application/pdf", "text/plain"));
    }

    #[test]
    fn multipart_bodies_split_into_named_parts() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"attributes\"\r\n\r\n{\"a\":1}\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"list.csv\"\r\nContent-Type: text/csv\r\n\r\nname,price\r\nmug,1\r\n--XyZ--\r\n";
        let parts = multipart("multipart/form-data; boundary=XyZ", body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "attributes");
        assert_eq!(parts[0].data, b"{\"a\":1}");
        assert_eq!(parts[1].filename.as_deref(), Some("list.csv"));
        assert_eq!(parts[1].content_type.as_deref(), Some("text/csv"));
        assert_eq!(parts[1].data, b"name,price\r\nmug,1");
        assert!(multipart("multipart/form-data", body).is_err());
        assert!(multipart("multipart/form-data; boundary=XyZ", b"--XyZ\r\nno end").is_err());
    }

    #[test]
    fn ranges_are_single_and_satisfiable() {
        assert_eq!(range(None, 100), Ok(None));
        assert_eq!(range(Some("bytes=0-9"), 100), Ok(Some((0, 10))));
        assert_eq!(range(Some("bytes=90-"), 100), Ok(Some((90, 10))));
        assert_eq!(range(Some("bytes=-5"), 100), Ok(Some((95, 5))));
        assert_eq!(range(Some("bytes=50-500"), 100), Ok(Some((50, 50))));
        assert_eq!(range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(range(Some("bytes=100-"), 100), Err(Unsatisfiable));
        assert_eq!(range(Some("bytes=9-3"), 100), Err(Unsatisfiable));
        assert_eq!(range(Some("bytes=x-"), 100), Err(Unsatisfiable));
        assert_eq!(range(Some("items=0-1"), 100), Ok(None));
    }
}
