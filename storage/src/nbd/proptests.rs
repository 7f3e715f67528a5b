//! No input may panic the NBD parsers, the handshake state machine or a whole session; what
//! the parsers accept must re-encode to the same bytes.

use std::sync::Arc;

use proptest::prelude::*;

use super::handshake::Negotiation;
use super::proto::{self, RequestHeader, Transmission};
use super::{ExportFlags, MemExport, serve_stream};

fn transmission() -> impl Strategy<Value = Transmission> {
    (
        any::<u64>(),
        any::<u16>(),
        any::<bool>(),
        any::<Option<u32>>(),
    )
        .prop_map(|(size, flags, structured, meta_context)| Transmission {
            size,
            flags,
            structured,
            meta_context,
        })
}

proptest! {
    #[test]
    fn request_parser_never_panics(bytes in prop::array::uniform28(any::<u8>()), session in transmission()) {
        if let Ok(header) = RequestHeader::parse(&bytes) {
            prop_assert_eq!(header.encode(), bytes);
            let _ = proto::validate(&header, &session);
        }
    }

    #[test]
    fn option_parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = proto::parse_info_request(&data);
        let _ = proto::parse_meta_context_request(&data);
        let header: [u8; 16] = std::array::from_fn(|i| data.get(i).copied().unwrap_or(0));
        let _ = proto::parse_option_header(&header);
    }

    #[test]
    fn negotiation_never_panics(
        client_flags in any::<u32>(),
        options in prop::collection::vec((0u32..14, prop::collection::vec(any::<u8>(), 0..48)), 0..12),
    ) {
        let mut negotiation = Negotiation::new("vol", 1 << 20, ExportFlags::default());
        let _ = negotiation.client_flags(client_flags);
        let mut out = Vec::new();
        for (option, data) in options {
            let _ = negotiation.option(option, &data, &mut out);
            let _ = negotiation.oversize_option(option, &mut out);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A whole session over an in-memory pipe: the greeting, then a fixed-newstyle client
    /// prefix (so that transmission is reached) or none, then arbitrary bytes.
    #[test]
    fn session_never_panics(prefix in any::<bool>(), tail in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut input = Vec::new();
        if prefix {
            input.extend_from_slice(&3u32.to_be_bytes());
            input.extend_from_slice(&proto::IHAVEOPT.to_be_bytes());
            input.extend_from_slice(&proto::OPT_EXPORT_NAME.to_be_bytes());
            input.extend_from_slice(&0u32.to_be_bytes());
        }
        input.extend_from_slice(&tail);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let (client, server) = tokio::io::duplex(1 << 16);
            let export = Arc::new(MemExport::new(64 << 10));
            let session = tokio::spawn(async move { serve_stream(server, "vol", export).await });
            let (mut rd, mut wr) = tokio::io::split(client);
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = wr.write_all(&input).await;
                let _ = wr.shutdown().await;
            });
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut rd, &mut sink).await;
            let _ = writer.await;
            assert!(session.await.is_ok(), "the session task panicked");
        });
    }
}
