//! Fuzzes a whole NBD session: the input is what a client sends, fed to `serve_stream` over an
//! in-memory pipe with a small `MemExport` behind it, while everything the server answers is
//! read and dropped. The first input byte picks a prefix that completes a fixed-newstyle
//! handshake (none, `EXPORT_NAME`, or structured replies + `base:allocation` + `GO`), so that
//! the transmission phase is reached often. The session must end (the input is finite) and
//! must not panic.

#![no_main]

use std::sync::{Arc, OnceLock};

use fulcrum_storage::nbd::proto::{
    IHAVEOPT, OPT_EXPORT_NAME, OPT_GO, OPT_SET_META_CONTEXT, OPT_STRUCTURED_REPLY,
};
use fulcrum_storage::nbd::{MemExport, serve_stream};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime builds")
    })
}

fn option(out: &mut Vec<u8>, option: u32, data: &[u8]) {
    out.extend_from_slice(&IHAVEOPT.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

fn client_prefix(kind: u8) -> Vec<u8> {
    let mut out = Vec::new();
    match kind % 3 {
        0 => {}
        1 => {
            out.extend_from_slice(&3u32.to_be_bytes());
            option(&mut out, OPT_EXPORT_NAME, b"vol");
        }
        _ => {
            out.extend_from_slice(&3u32.to_be_bytes());
            option(&mut out, OPT_STRUCTURED_REPLY, b"");
            let mut meta = 3u32.to_be_bytes().to_vec();
            meta.extend_from_slice(b"vol");
            meta.extend_from_slice(&1u32.to_be_bytes());
            meta.extend_from_slice(&15u32.to_be_bytes());
            meta.extend_from_slice(b"base:allocation");
            option(&mut out, OPT_SET_META_CONTEXT, &meta);
            let mut go = 3u32.to_be_bytes().to_vec();
            go.extend_from_slice(b"vol");
            go.extend_from_slice(&0u16.to_be_bytes());
            option(&mut out, OPT_GO, &go);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let mut input = client_prefix(kind);
    input.extend_from_slice(rest);
    runtime().block_on(async move {
        let (client, server) = tokio::io::duplex(1 << 16);
        let export = Arc::new(MemExport::new(64 << 10));
        let (mut rd, mut wr) = tokio::io::split(client);
        let feed = async move {
            let _ = wr.write_all(&input).await;
            let _ = wr.shutdown().await;
        };
        let drain = async move {
            let mut sink = [0u8; 1 << 16];
            while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
        };
        let serve = async move {
            let _ = serve_stream(server, "vol", export).await;
        };
        tokio::join!(feed, drain, serve);
    });
});
