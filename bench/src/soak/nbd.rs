//! The soak's NBD client: a writer in the client namespace that writes a 4 KiB block to the
//! volume on VIP1 every [`PAUSE`], each to the next slot, and flushes; a write counts as
//! acknowledged when its flush returns, as a filesystem's commit would. At the end every slot
//! is read back from whoever holds VIP1 then.
//!
//! A client of its own rather than `nbdcopy` runs: one process per write would cost more than
//! the write, and it could not place a block at an offset. It speaks the fixed newstyle
//! handshake with `NBD_OPT_EXPORT_NAME` and simple replies, one request at a time, which is all
//! this needs (the NBD spec, "proto.md").

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fulcrum_lab::netns::Netns;
use fulcrum_lab::seed004::load::thread_in;

use super::clients::{Kind, Request};

/// One write's size, and the size of a slot.
pub(crate) const BLOCK: usize = 4096;

/// Time between two writes: 3,000 in ten minutes, fewer than the 16 MiB volume's 4,096 slots,
/// so no acknowledged block is overwritten by a later one in a run of that length.
const PAUSE: Duration = Duration::from_millis(200);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a reply may take: a write on a primary that lost its peer waits out the volume's
/// `timeout` first.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;
const OPT_EXPORT_NAME: u32 = 1;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;

/// One write: its sequence number (which picks its slot and its content) and whether it was
/// acknowledged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Write4k {
    pub(crate) seq: u64,
    pub(crate) acked: bool,
}

/// What the writer hands back when stopped.
#[derive(Debug, Default)]
pub(crate) struct WriterLog {
    pub(crate) requests: Vec<Request>,
    pub(crate) writes: Vec<Write4k>,
}

/// A connection in the transmission phase.
#[derive(Debug)]
pub(crate) struct Client {
    stream: TcpStream,
    /// The export's size in bytes.
    pub(crate) size: u64,
    handle: u64,
}

impl Client {
    /// Connects to `addr` and opens export `name`.
    pub(crate) fn connect(addr: SocketAddr, name: &str) -> Result<Self, String> {
        let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| format!("socket: {e}"))?;
        let mut greeting = [0u8; 18];
        read(&mut stream, &mut greeting, "greeting")?;
        if u64_at(&greeting, 0) != NBDMAGIC || u64_at(&greeting, 8) != IHAVEOPT {
            return Err("not a newstyle NBD server".to_owned());
        }
        let flags = u16::from_be_bytes([greeting[16], greeting[17]]);
        if flags & FLAG_FIXED_NEWSTYLE == 0 {
            return Err("the server does not speak fixed newstyle".to_owned());
        }
        let no_zeroes = flags & FLAG_NO_ZEROES != 0;
        let client_flags = u32::from(FLAG_FIXED_NEWSTYLE) | if no_zeroes { 2 } else { 0 };
        let mut option = client_flags.to_be_bytes().to_vec();
        option.extend_from_slice(&IHAVEOPT.to_be_bytes());
        option.extend_from_slice(&OPT_EXPORT_NAME.to_be_bytes());
        option.extend_from_slice(&(name.len() as u32).to_be_bytes());
        option.extend_from_slice(name.as_bytes());
        stream
            .write_all(&option)
            .map_err(|e| format!("send option: {e}"))?;
        // The export's size and flags; the server hangs up on an unknown name.
        let mut export = vec![0u8; if no_zeroes { 10 } else { 134 }];
        read(&mut stream, &mut export, "export")?;
        Ok(Self {
            stream,
            size: u64_at(&export, 0),
            handle: 0,
        })
    }

    /// Writes `data` at `offset`.
    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), String> {
        self.request(CMD_WRITE, offset, data.len() as u32, data)?;
        self.reply("write", &mut [])
    }

    /// Flushes what was written to stable storage (on both copies, protocol C).
    pub(crate) fn flush(&mut self) -> Result<(), String> {
        self.request(CMD_FLUSH, 0, 0, &[])?;
        self.reply("flush", &mut [])
    }

    /// Reads `into.len()` bytes at `offset`.
    pub(crate) fn read(&mut self, offset: u64, into: &mut [u8]) -> Result<(), String> {
        self.request(CMD_READ, offset, into.len() as u32, &[])?;
        self.reply("read", into)
    }

    /// Says goodbye (`NBD_CMD_DISC`), which has no reply.
    pub(crate) fn close(mut self) {
        let _ = self.request(CMD_DISC, 0, 0, &[]);
    }

    fn request(&mut self, kind: u16, offset: u64, len: u32, data: &[u8]) -> Result<(), String> {
        self.handle += 1;
        let mut head = Vec::with_capacity(28 + data.len());
        head.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        head.extend_from_slice(&0u16.to_be_bytes());
        head.extend_from_slice(&kind.to_be_bytes());
        head.extend_from_slice(&self.handle.to_be_bytes());
        head.extend_from_slice(&offset.to_be_bytes());
        head.extend_from_slice(&len.to_be_bytes());
        head.extend_from_slice(data);
        self.stream
            .write_all(&head)
            .map_err(|e| format!("send request: {e}"))
    }

    /// Reads the simple reply to the last request, and its data into `data`.
    fn reply(&mut self, what: &str, data: &mut [u8]) -> Result<(), String> {
        let mut head = [0u8; 16];
        read(&mut self.stream, &mut head, what)?;
        let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let error = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if magic != SIMPLE_REPLY_MAGIC || u64_at(&head, 8) != self.handle {
            return Err(format!("{what}: unexpected reply"));
        }
        if error != 0 {
            // EPERM (1): the node is not primary (any more); EIO (5), ENOSPC (28)...
            return Err(format!("{what}: error {error}"));
        }
        if !data.is_empty() {
            read(&mut self.stream, data, what)?;
        }
        Ok(())
    }
}

fn read(stream: &mut TcpStream, into: &mut [u8], what: &str) -> Result<(), String> {
    stream.read_exact(into).map_err(|e| format!("{what}: {e}"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(word)
}

/// Starts the writer in `ns`, writing to export `name` on `addr` until `stop` is set; its
/// requests carry worker number `worker`.
pub(crate) fn start_writer(
    ns: &Netns,
    addr: SocketAddr,
    name: &'static str,
    worker: usize,
    slots: u64,
    stop: &Arc<AtomicBool>,
) -> JoinHandle<WriterLog> {
    let stop = Arc::clone(stop);
    thread_in(ns, move || {
        let mut log = WriterLog::default();
        let mut client: Option<Client> = None;
        for seq in 0.. {
            if stop.load(Relaxed) {
                break;
            }
            let started = Instant::now();
            let result = (|| {
                let c = match client.as_mut() {
                    Some(c) => c,
                    None => client.insert(Client::connect(addr, name)?),
                };
                c.write(slot_of(seq, slots) * BLOCK as u64, &block(seq))?;
                c.flush()
            })();
            if result.is_err() {
                // A reconnect finds whoever holds VIP1 now.
                client = None;
            }
            log.writes.push(Write4k {
                seq,
                acked: result.is_ok(),
            });
            log.requests.push(Request {
                kind: Kind::NbdWrite,
                worker,
                started,
                ended: Instant::now(),
                ok: result.is_ok(),
                error: result.err().unwrap_or_default(),
                sticky_broken: false,
            });
            std::thread::sleep(PAUSE);
        }
        if let Some(c) = client {
            c.close();
        }
        log
    })
}

/// The slot write `seq` goes to.
pub(crate) fn slot_of(seq: u64, slots: u64) -> u64 {
    seq % slots
}

/// Write `seq`'s content: its number, then a xorshift stream seeded by it, so a block from the
/// wrong write, or from the wrong place, never passes for the right one.
pub(crate) fn block(seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(BLOCK);
    out.extend_from_slice(b"soak-nbd");
    out.extend_from_slice(&seq.to_le_bytes());
    let mut state = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while out.len() < BLOCK {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(BLOCK);
    out
}

#[cfg(test)]
mod tests {
    use super::{BLOCK, block, slot_of};

    #[test]
    fn blocks_differ_and_slots_wrap() {
        assert_eq!(block(7).len(), BLOCK);
        assert_ne!(block(7), block(8));
        assert_eq!(block(7), block(7));
        assert_eq!(slot_of(4097, 4096), 1);
    }
}
