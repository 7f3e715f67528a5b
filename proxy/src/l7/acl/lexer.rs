//! Splits ACL definitions and conditions into words, the way HAProxy's
//! configuration parser does.
//!
//! Words are separated by spaces or tabs. `"..."` and `'...'` keep spaces
//! inside a word; a backslash before a space, tab, quote, `#` or another
//! backslash makes that character literal (outside single quotes). Any other
//! backslash is kept, so regexes such as `^/v\d+/` need no doubling.
//!
//! Each word remembers where its first quoted or escaped character is, so that
//! `"||"` or `"-i"` can be used as plain values and never as operators or flags.

use super::AclError;

/// One word of an ACL definition or condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    /// The word with quotes and escapes removed.
    pub(crate) text: String,
    /// Byte offset in `text` of the first character that was quoted or
    /// escaped; `None` when the whole word was written bare.
    pub(crate) quoted_at: Option<usize>,
}

impl Word {
    /// True when the word is exactly `s`, written without quotes or escapes.
    pub(crate) fn is_bare(&self, s: &str) -> bool {
        self.quoted_at.is_none() && self.text == s
    }

    /// The leading part of the word that was written bare.
    pub(crate) fn bare_prefix(&self) -> &str {
        let end = self.quoted_at.unwrap_or(self.text.len());
        self.text.get(..end).unwrap_or("")
    }
}

/// Splits `text` into words; fails only on an unterminated quote.
pub(crate) fn split_words(text: &str) -> Result<Vec<Word>, AclError> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| is_blank(*c)).is_some() {}
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = String::new();
        let mut quoted_at = None;
        while let Some(c) = chars.next_if(|c| !is_blank(*c)) {
            match c {
                '"' | '\'' => {
                    quoted_at.get_or_insert(word.len());
                    let quote = c;
                    loop {
                        match chars.next() {
                            None => {
                                return Err(AclError::UnterminatedQuote {
                                    quote,
                                    text: text.to_owned(),
                                });
                            }
                            Some(q) if q == quote => break,
                            Some('\\') if quote == '"' => {
                                push_escaped(&mut chars, &mut word);
                            }
                            Some(other) => word.push(other),
                        }
                    }
                }
                '\\' => {
                    if chars.peek().copied().is_some_and(is_escapable) {
                        quoted_at.get_or_insert(word.len());
                    }
                    push_escaped(&mut chars, &mut word);
                }
                other => word.push(other),
            }
        }
        words.push(Word {
            text: word,
            quoted_at,
        });
    }
}

/// Handles the character after a backslash: an escapable one is pushed alone,
/// anything else keeps the backslash in front of it.
fn push_escaped(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, word: &mut String) {
    match chars.next_if(|c| is_escapable(*c)) {
        Some(c) => word.push(c),
        None => word.push('\\'),
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

fn is_escapable(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\\' | '"' | '\'' | '#')
}
