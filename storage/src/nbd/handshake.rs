//! Option haggling, the handshake phase, as a state machine without I/O: the session feeds it
//! each option the client sends and writes out what it appends; it says when to enter
//! transmission, and when to hang up.
//!
//! One export is served. The empty name (the spec's "default export") names it too, so that
//! `nbd://host/` works as well as `nbd://host/NAME`.

use super::ExportFlags;
use super::proto::{
    self, BASE_ALLOCATION, BLOCK_SIZE_MIN, BLOCK_SIZE_PREFERRED, FLAG_C_FIXED_NEWSTYLE,
    FLAG_C_NO_ZEROES, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT, INFO_BLOCK_SIZE, INFO_EXPORT,
    INFO_NAME, NBDMAGIC, OPT_ABORT, OPT_EXPORT_NAME, OPT_GO, OPT_INFO, OPT_LIST,
    OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT, OPT_STARTTLS, OPT_STRUCTURED_REPLY, REP_ACK,
    REP_ERR_INVALID, REP_ERR_TOO_BIG, REP_ERR_UNKNOWN, REP_ERR_UNSUP, REP_INFO, REP_META_CONTEXT,
    REP_SERVER, Transmission, put_option_reply, transmission_flags,
};
use crate::nbd::MAX_REQUEST_LEN;

/// Options one connection may send before the server decides it is being stalled.
pub const MAX_OPTIONS: u32 = 256;

/// Longest option data the server reads into memory; longer data is read and dropped, and
/// the option refused (or, for `EXPORT_NAME`, which cannot be refused, the session ended).
pub const MAX_OPTION_DATA: u32 = 64 << 10;

/// The id of `base:allocation` once selected.
pub const BASE_ALLOCATION_ID: u32 = 1;

/// What the session should do after an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send what was appended, then read the next option.
    Continue,
    /// Send what was appended, then close: the client aborted.
    Abort,
    /// Close without sending anything more: the client broke the protocol, or asked for an
    /// export that `EXPORT_NAME` cannot refuse politely.
    Disconnect(&'static str),
    /// Send what was appended, then enter the transmission phase.
    Transmit(Transmission),
}

/// The client's flags named something the server did not offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown client flags {0:#x}")]
pub struct BadClientFlags(pub u32);

/// The state of one connection's option haggling.
#[derive(Debug, Clone)]
pub struct Negotiation {
    name: String,
    size: u64,
    flags: ExportFlags,
    no_zeroes: bool,
    structured: bool,
    meta_context: bool,
    options: u32,
}

impl Negotiation {
    /// What the server sends first: NBDMAGIC, IHAVEOPT and the handshake flags.
    pub fn greeting() -> [u8; 18] {
        let mut out = [0; 18];
        out[0..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
        out[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
        out[16..18].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
        out
    }

    /// A negotiation for the export `name` as it is now.
    pub fn new(name: &str, size: u64, flags: ExportFlags) -> Negotiation {
        Negotiation {
            name: name.to_owned(),
            size,
            flags,
            no_zeroes: false,
            structured: false,
            meta_context: false,
            options: 0,
        }
    }

    /// Takes the client's flags. Fixed newstyle is honoured even when the client leaves its
    /// bit clear (the spec allows it); an unknown bit must end the session.
    pub fn client_flags(&mut self, flags: u32) -> Result<(), BadClientFlags> {
        if flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
            return Err(BadClientFlags(flags));
        }
        self.no_zeroes = flags & FLAG_C_NO_ZEROES != 0;
        Ok(())
    }

    /// Handles one option whose data (at most [`MAX_OPTION_DATA`] bytes) was read in full,
    /// appending the replies to `out`.
    pub fn option(&mut self, option: u32, data: &[u8], out: &mut Vec<u8>) -> Next {
        if let Some(next) = self.count() {
            return next;
        }
        match option {
            OPT_EXPORT_NAME => self.export_name(data, out),
            OPT_ABORT => {
                // The spec asks servers to ignore any data sent with ABORT.
                put_option_reply(out, option, REP_ACK, &[]);
                Next::Abort
            }
            OPT_LIST => {
                if data.is_empty() {
                    let mut server = Vec::with_capacity(4 + self.name.len());
                    server.extend_from_slice(&len_u32(self.name.len()).to_be_bytes());
                    server.extend_from_slice(self.name.as_bytes());
                    put_option_reply(out, option, REP_SERVER, &server);
                    put_option_reply(out, option, REP_ACK, &[]);
                } else {
                    error(out, option, REP_ERR_INVALID, "LIST takes no data");
                }
                Next::Continue
            }
            OPT_STARTTLS => {
                error(
                    out,
                    option,
                    REP_ERR_UNSUP,
                    "TLS is not supported by this server",
                );
                Next::Continue
            }
            OPT_INFO | OPT_GO => self.info(option, data, out),
            OPT_STRUCTURED_REPLY => {
                if data.is_empty() {
                    self.structured = true;
                    put_option_reply(out, option, REP_ACK, &[]);
                } else {
                    error(
                        out,
                        option,
                        REP_ERR_INVALID,
                        "STRUCTURED_REPLY takes no data",
                    );
                }
                Next::Continue
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                self.meta_context(option, data, out);
                Next::Continue
            }
            _ => {
                error(out, option, REP_ERR_UNSUP, "unknown option");
                Next::Continue
            }
        }
    }

    /// Handles an option whose data was longer than [`MAX_OPTION_DATA`] and was dropped.
    pub fn oversize_option(&mut self, option: u32, out: &mut Vec<u8>) -> Next {
        if let Some(next) = self.count() {
            return next;
        }
        match option {
            OPT_EXPORT_NAME => Next::Disconnect("EXPORT_NAME longer than any export name"),
            OPT_ABORT => {
                put_option_reply(out, option, REP_ACK, &[]);
                Next::Abort
            }
            OPT_LIST
            | OPT_STARTTLS
            | OPT_INFO
            | OPT_GO
            | OPT_STRUCTURED_REPLY
            | OPT_LIST_META_CONTEXT
            | OPT_SET_META_CONTEXT => {
                if option == OPT_SET_META_CONTEXT {
                    // A failed SET still replaces the selection.
                    self.meta_context = false;
                }
                error(out, option, REP_ERR_TOO_BIG, "option data too long");
                Next::Continue
            }
            _ => {
                error(out, option, REP_ERR_UNSUP, "unknown option");
                Next::Continue
            }
        }
    }

    fn count(&mut self) -> Option<Next> {
        self.options += 1;
        (self.options > MAX_OPTIONS).then_some(Next::Disconnect("too many options"))
    }

    fn is_ours(&self, name: &[u8]) -> bool {
        name.is_empty() || name == self.name.as_bytes()
    }

    fn transmission(&self) -> Transmission {
        Transmission {
            size: self.size,
            flags: transmission_flags(self.flags, self.structured),
            structured: self.structured,
            meta_context: self.meta_context.then_some(BASE_ALLOCATION_ID),
        }
    }

    fn export_name(&mut self, name: &[u8], out: &mut Vec<u8>) -> Next {
        if !self.is_ours(name) {
            return Next::Disconnect("EXPORT_NAME of an unknown export");
        }
        let transmission = self.transmission();
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&transmission.flags.to_be_bytes());
        if !self.no_zeroes {
            out.extend_from_slice(&[0; 124]);
        }
        Next::Transmit(transmission)
    }

    fn info(&mut self, option: u32, data: &[u8], out: &mut Vec<u8>) -> Next {
        let request = match proto::parse_info_request(data) {
            Ok(request) => request,
            Err(_) => {
                error(out, option, REP_ERR_INVALID, "malformed INFO/GO data");
                return Next::Continue;
            }
        };
        if !self.is_ours(request.export) {
            error(out, option, REP_ERR_UNKNOWN, "no such export");
            return Next::Continue;
        }
        let transmission = self.transmission();

        let mut info = Vec::with_capacity(14);
        info.extend_from_slice(&INFO_EXPORT.to_be_bytes());
        info.extend_from_slice(&self.size.to_be_bytes());
        info.extend_from_slice(&transmission.flags.to_be_bytes());
        put_option_reply(out, option, REP_INFO, &info);

        if request.requests.contains(&INFO_NAME) {
            info.clear();
            info.extend_from_slice(&INFO_NAME.to_be_bytes());
            info.extend_from_slice(self.name.as_bytes());
            put_option_reply(out, option, REP_INFO, &info);
        }
        // Sent unasked too (the spec allows it): the maximum is lower than the default
        // "unlimited", so a client that asks must learn it, and one that does not may use it.
        info.clear();
        info.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        info.extend_from_slice(&BLOCK_SIZE_MIN.to_be_bytes());
        info.extend_from_slice(&BLOCK_SIZE_PREFERRED.to_be_bytes());
        info.extend_from_slice(&MAX_REQUEST_LEN.to_be_bytes());
        put_option_reply(out, option, REP_INFO, &info);

        put_option_reply(out, option, REP_ACK, &[]);
        if option == OPT_GO {
            Next::Transmit(transmission)
        } else {
            Next::Continue
        }
    }

    fn meta_context(&mut self, option: u32, data: &[u8], out: &mut Vec<u8>) {
        let set = option == OPT_SET_META_CONTEXT;
        if set {
            // Issuing SET replaces the selection, even when it fails.
            self.meta_context = false;
        }
        if !self.structured {
            error(
                out,
                option,
                REP_ERR_INVALID,
                "negotiate structured replies first",
            );
            return;
        }
        let request = match proto::parse_meta_context_request(data) {
            Ok(request) => request,
            Err(_) => {
                error(out, option, REP_ERR_INVALID, "malformed meta context data");
                return;
            }
        };
        if !self.is_ours(request.export) {
            error(out, option, REP_ERR_UNKNOWN, "no such export");
            return;
        }
        let mut found = false;
        for query in &request.queries {
            if !query.contains(&b':') {
                error(
                    out,
                    option,
                    REP_ERR_INVALID,
                    "a query must start with a namespace",
                );
                return;
            }
            // `base:` is a wildcard for LIST and selects nothing for SET; unknown namespaces
            // and leaf names are ignored, as the spec requires.
            found |= *query == BASE_ALLOCATION.as_bytes() || (!set && *query == b"base:");
        }
        // No query: LIST lists everything, SET selects nothing.
        found |= !set && request.queries.is_empty();
        if found {
            let id = if set { BASE_ALLOCATION_ID } else { 0 };
            let mut context = Vec::with_capacity(4 + BASE_ALLOCATION.len());
            context.extend_from_slice(&id.to_be_bytes());
            context.extend_from_slice(BASE_ALLOCATION.as_bytes());
            put_option_reply(out, option, REP_META_CONTEXT, &context);
            self.meta_context |= set;
        }
        put_option_reply(out, option, REP_ACK, &[]);
    }
}

fn error(out: &mut Vec<u8>, option: u32, reply: u32, message: &str) {
    put_option_reply(out, option, reply, message.as_bytes());
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::nbd::proto::{FLAG_CAN_MULTI_CONN, FLAG_READ_ONLY, FLAG_SEND_DF, REP_ERR_UNSUP};

    /// The option replies in `out`, as (option, reply type, data).
    fn replies(mut out: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
        let mut all = Vec::new();
        while !out.is_empty() {
            let magic = u64::from_be_bytes(out[0..8].try_into().unwrap());
            assert_eq!(magic, proto::OPTION_REPLY_MAGIC);
            let option = u32::from_be_bytes(out[8..12].try_into().unwrap());
            let reply = u32::from_be_bytes(out[12..16].try_into().unwrap());
            let len = u32::from_be_bytes(out[16..20].try_into().unwrap()) as usize;
            all.push((option, reply, out[20..20 + len].to_vec()));
            out = &out[20 + len..];
        }
        all
    }

    fn negotiation() -> Negotiation {
        let flags = ExportFlags {
            read_only: true,
            can_multi_conn: true,
            ..ExportFlags::default()
        };
        Negotiation::new("vol", 1 << 20, flags)
    }

    fn meta_data(export: &[u8], queries: &[&[u8]]) -> Vec<u8> {
        let mut data = Vec::new();
        data.extend_from_slice(&(export.len() as u32).to_be_bytes());
        data.extend_from_slice(export);
        data.extend_from_slice(&(queries.len() as u32).to_be_bytes());
        for q in queries {
            data.extend_from_slice(&(q.len() as u32).to_be_bytes());
            data.extend_from_slice(q);
        }
        data
    }

    fn go_data(export: &[u8]) -> Vec<u8> {
        let mut data = (export.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(export);
        data.extend_from_slice(&0u16.to_be_bytes());
        data
    }

    #[test]
    fn client_flags_must_be_known() {
        let mut n = negotiation();
        assert_eq!(n.client_flags(3), Ok(()));
        assert_eq!(n.client_flags(4), Err(BadClientFlags(4)));
    }

    // Input: STRUCTURED_REPLY, SET_META_CONTEXT base:allocation, GO "vol".
    // Output: ACK; META_CONTEXT id 1 then ACK; INFO export, INFO block size, ACK; transmit
    // with DF, multi-conn and read-only, and the context selected.
    #[test]
    fn go_after_meta_context_transmits_with_the_context() {
        let mut n = negotiation();
        let mut out = Vec::new();
        assert_eq!(
            n.option(OPT_STRUCTURED_REPLY, &[], &mut out),
            Next::Continue
        );
        let data = meta_data(b"vol", &[b"base:allocation", b"qemu:dirty-bitmap:x"]);
        assert_eq!(
            n.option(OPT_SET_META_CONTEXT, &data, &mut out),
            Next::Continue
        );
        let next = n.option(OPT_GO, &go_data(b"vol"), &mut out);
        let Next::Transmit(t) = next else {
            panic!("expected transmission, got {next:?}")
        };
        assert_eq!(t.meta_context, Some(BASE_ALLOCATION_ID));
        assert!(t.structured);
        assert_ne!(t.flags & FLAG_SEND_DF, 0);
        assert_ne!(t.flags & FLAG_CAN_MULTI_CONN, 0);
        assert_ne!(t.flags & FLAG_READ_ONLY, 0);
        let types: Vec<u32> = replies(&out).iter().map(|r| r.1).collect();
        assert_eq!(
            types,
            [
                REP_ACK,
                REP_META_CONTEXT,
                REP_ACK,
                REP_INFO,
                REP_INFO,
                REP_ACK
            ]
        );
    }

    // Input: SET_META_CONTEXT before STRUCTURED_REPLY; LIST_META_CONTEXT "base:".
    // Output: ERR_INVALID; then (after STRUCTURED_REPLY) META_CONTEXT id 0, ACK.
    #[test]
    fn meta_context_needs_structured_replies_and_lists_wildcards() {
        let mut n = negotiation();
        let mut out = Vec::new();
        n.option(
            OPT_SET_META_CONTEXT,
            &meta_data(b"", &[b"base:allocation"]),
            &mut out,
        );
        assert_eq!(replies(&out)[0].1, REP_ERR_INVALID);
        out.clear();
        n.option(OPT_STRUCTURED_REPLY, &[], &mut out);
        out.clear();
        n.option(
            OPT_LIST_META_CONTEXT,
            &meta_data(b"", &[b"base:"]),
            &mut out,
        );
        let r = replies(&out);
        assert_eq!(r[0].1, REP_META_CONTEXT);
        assert_eq!(&r[0].2[4..], BASE_ALLOCATION.as_bytes());
        assert_eq!(r[1].1, REP_ACK);
        // LIST does not select.
        assert_eq!(n.transmission().meta_context, None);
    }

    // Input: an unknown option, STARTTLS, GO for another export, EXPORT_NAME of another.
    // Output: ERR_UNSUP, ERR_UNSUP, ERR_UNKNOWN, then hang up.
    #[test]
    fn refusals() {
        let mut n = negotiation();
        let mut out = Vec::new();
        n.option(42, b"whatever", &mut out);
        n.option(OPT_STARTTLS, &[], &mut out);
        n.option(OPT_GO, &go_data(b"other"), &mut out);
        let types: Vec<u32> = replies(&out).iter().map(|r| r.1).collect();
        assert_eq!(types, [REP_ERR_UNSUP, REP_ERR_UNSUP, REP_ERR_UNKNOWN]);
        assert!(matches!(
            n.option(OPT_EXPORT_NAME, b"other", &mut out),
            Next::Disconnect(_)
        ));
    }

    // Input: client flags with NO_ZEROES, EXPORT_NAME "".
    // Output: size and flags, no zero padding.
    #[test]
    fn export_name_honours_no_zeroes() {
        let mut n = negotiation();
        n.client_flags(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)
            .unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            n.option(OPT_EXPORT_NAME, b"", &mut out),
            Next::Transmit(_)
        ));
        assert_eq!(out.len(), 10);
        let mut n = negotiation();
        out.clear();
        n.option(OPT_EXPORT_NAME, b"vol", &mut out);
        assert_eq!(out.len(), 134);
    }

    #[test]
    fn too_many_options_hang_up() {
        let mut n = negotiation();
        let mut out = Vec::new();
        for _ in 0..MAX_OPTIONS {
            assert_eq!(n.option(OPT_LIST, &[], &mut out), Next::Continue);
        }
        assert!(matches!(
            n.option(OPT_LIST, &[], &mut out),
            Next::Disconnect(_)
        ));
    }
}
