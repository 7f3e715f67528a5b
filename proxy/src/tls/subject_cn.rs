//! The Common Names (CN) in a certificate's subject, which HAProxy also picks a certificate by
//! for a client's SNI: an older or internal certificate may name its host there alone, with no
//! subjectAltName. webpki gives the subject as raw DER and reads only the SAN's names, so this
//! walks the few DER structures of a Name (RFC 5280 §4.1.2.4) itself:
//!
//! ```text
//! Name ::= SEQUENCE OF SET OF SEQUENCE { type OBJECT IDENTIFIER, value ANY }
//! ```

/// The DER of the attribute type id-at-commonName (2.5.4.3), tag and length included.
const COMMON_NAME: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];

/// DER tags.
const SET: u8 = 0x31;
const SEQUENCE: u8 = 0x30;
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;

/// The Common Names in `subject`, the contents of a DER Name (webpki's `Cert::subject`), in
/// order. Values in encodings other than UTF8String, PrintableString and IA5String (a host name
/// is ASCII) are skipped, and malformed DER ends the walk with what was found before it.
pub(super) fn common_names(subject: &[u8]) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rdns = subject;
    while let Some((SET, rdn, rest)) = next(rdns) {
        rdns = rest;
        let mut attributes = rdn;
        while let Some((SEQUENCE, attribute, rest)) = next(attributes) {
            attributes = rest;
            let Some(value) = attribute.strip_prefix(COMMON_NAME) else {
                continue;
            };
            if let Some((UTF8_STRING | PRINTABLE_STRING | IA5_STRING, text, _)) = next(value)
                && let Ok(text) = std::str::from_utf8(text)
            {
                names.push(text);
            }
        }
    }
    names
}

/// Splits the first DER element off `der`: its tag, its contents and what follows it. `None` at
/// the end or on malformed input (a length in more than two bytes is more than a Name holds).
fn next(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => {
            let (&len, rest) = rest.split_first()?;
            (usize::from(len), rest)
        }
        0x82 => {
            let (len, rest) = rest.split_first_chunk::<2>()?;
            (usize::from(u16::from_be_bytes(*len)), rest)
        }
        _ => return None,
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// One RDN of one attribute: `type` (its DER) = `value` as `tag`.
    fn rdn(r#type: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let mut attribute = r#type.to_vec();
        attribute.extend([tag, value.len() as u8]);
        attribute.extend(value);
        let mut sequence = vec![SEQUENCE, attribute.len() as u8];
        sequence.extend(attribute);
        let mut set = vec![SET, sequence.len() as u8];
        set.extend(sequence);
        set
    }

    const ORGANIZATION: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x0a];

    #[test]
    fn every_common_name_is_found_among_other_attributes() {
        let mut subject = rdn(ORGANIZATION, UTF8_STRING, b"Example");
        subject.extend(rdn(COMMON_NAME, PRINTABLE_STRING, b"a.example.com"));
        subject.extend(rdn(COMMON_NAME, UTF8_STRING, b"b.example.com"));
        assert_eq!(common_names(&subject), ["a.example.com", "b.example.com"]);
    }

    #[test]
    fn a_name_in_another_encoding_or_malformed_der_gives_no_name() {
        const BMP_STRING: u8 = 0x1e;
        assert!(common_names(&rdn(COMMON_NAME, BMP_STRING, b"\0a")).is_empty());
        let whole = rdn(COMMON_NAME, UTF8_STRING, b"a.example.com");
        for cut in 0..whole.len() {
            assert!(common_names(&whole[..cut]).is_empty(), "cut at {cut}");
        }
        assert!(common_names(&[SET, 0x85, 1, 2, 3, 4, 5]).is_empty());
    }

    #[test]
    fn long_form_lengths_are_read() {
        let value = vec![b'a'; 200];
        let mut attribute = COMMON_NAME.to_vec();
        attribute.extend([UTF8_STRING, 0x81, 200]);
        attribute.extend(&value);
        let mut sequence = vec![SEQUENCE, 0x81, attribute.len() as u8];
        sequence.extend(attribute);
        let mut subject = vec![SET, 0x82];
        subject.extend((sequence.len() as u16).to_be_bytes());
        subject.extend(sequence);
        assert_eq!(
            common_names(&subject),
            [std::str::from_utf8(&value).unwrap()]
        );
    }
}
