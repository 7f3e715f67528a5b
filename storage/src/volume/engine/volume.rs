//! [`Volume`]: one replicated volume on this node, its public face. Starting it opens the
//! backing and the metadata, listens for the peer and starts the connection manager; the role
//! and connection commands are DRBD's (`primary`, `secondary`, `connect`, `disconnect`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::connect;
use super::disk::LocalDisk;
use super::error::VolumeError;
use super::export::VolumeExport;
use super::inner::Inner;
use super::meta_thread::MetaHandle;
use super::roles;
use super::status::{VerifyReport, VolumeEvent, VolumeStatus};
use super::verify;
use crate::volume::config::{Role, VolumeConfig};
use crate::volume::meta::{self, Meta, MetaError};

/// A running replicated volume. Cheap to clone (the clones share it). Dropping the last clone
/// without [`Volume::stop`] tears it down abruptly, like a crash: the metadata is left unclean
/// and writes in flight are not acknowledged.
#[derive(Debug, Clone)]
pub struct Volume {
    inner: Arc<Inner>,
    _alive: Arc<CancelOnDrop>,
}

/// Cancels the volume's tasks when the last [`Volume`] handle goes.
#[derive(Debug)]
struct CancelOnDrop(CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Volume {
    /// Opens or creates the metadata in `state_dir/volume/NAME/` and the backing file (created
    /// at its size when missing: a brand-new pair both created by Fulcrum connects UpToDate
    /// without a full sync), listens on `listen`, connects to `peer` with the backoff, takes the
    /// configured role (unless `follow_vrrp`: then secondary until promoted), and serves NBD on
    /// `nbd.listen` while primary.
    pub async fn start(
        config: VolumeConfig,
        state_dir: &Path,
        node: &str,
    ) -> Result<Volume, VolumeError> {
        let backing = config.backing.clone();
        let (direct_io, al_extents) = (config.direct_io, config.al_extents);
        let dir = state_dir.join("volume").join(&config.name);
        let (disk, meta) =
            tokio::task::spawn_blocking(move || open(&backing, direct_io, al_extents, &dir))
                .await
                .map_err(|e| VolumeError::Io(std::io::Error::other(e)))??;
        if meta.size() != config.backing.size {
            return Err(VolumeError::SizeMismatch {
                meta: meta.size(),
                backing: config.backing.size,
            });
        }
        if let Some(r) = meta.recovery() {
            warn!(volume = %config.name, extents = r.extents.len(), out_of_sync = r.out_of_sync_bytes, "recovered from an unclean shutdown");
        }
        let state = *meta.state();
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| VolumeError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let meta = MetaHandle::spawn(meta, &config.name)?;
        let initial_primary = config.follow_vrrp.is_none() && config.role == Role::Primary;
        let inner = Inner::new(config, node.to_owned(), disk, meta, &state);
        // Tear-down on drop: the NBD server holds the volume, so it must be stopped for the
        // rest to go.
        let reaper = Arc::clone(&inner);
        inner.tasks.spawn(async move {
            reaper.cancel.cancelled().await;
            roles::stop_nbd(&reaper).await;
        });
        inner
            .tasks
            .spawn(connect::run(Arc::clone(&inner), listener));
        let volume = Volume {
            _alive: Arc::new(CancelOnDrop(inner.cancel.clone())),
            inner,
        };
        info!(volume = %volume.inner.config.name, node, disk = ?state.disk, "volume started");
        if initial_primary && let Err(error) = volume.promote(false).await {
            warn!(volume = %volume.inner.config.name, %error, "configured primary, staying secondary");
        }
        Ok(volume)
    }

    /// A snapshot, like `/proc/drbd`.
    pub fn status(&self) -> VolumeStatus {
        self.inner.status()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<VolumeEvent> {
        self.inner.events.subscribe()
    }

    /// Becomes primary: refused unless the local disk is UpToDate and the peer is not primary
    /// (`force` takes a non-UpToDate disk and starts a new generation).
    pub async fn promote(&self, force: bool) -> Result<(), VolumeError> {
        roles::promote(&self.inner, force).await
    }

    /// Becomes secondary; the NBD server is stopped (its clients drained) first.
    pub async fn demote(&self) -> Result<(), VolumeError> {
        roles::demote(&self.inner).await
    }

    /// Leaves StandAlone (after a split brain or `disconnect`). With `discard_my_data`, a split
    /// brain found on the next connect is resolved by making this node the sync target.
    pub async fn connect(&self, discard_my_data: bool) -> Result<(), VolumeError> {
        if self.inner.cancel.is_cancelled() {
            return Err(VolumeError::Stopped);
        }
        self.inner.admin.send_modify(|a| {
            a.standalone = false;
            a.discard_my_data = discard_my_data;
        });
        Ok(())
    }

    /// Closes the connection and stays StandAlone until [`Volume::connect`].
    pub async fn disconnect(&self) -> Result<(), VolumeError> {
        if self.inner.cancel.is_cancelled() {
            return Err(VolumeError::Stopped);
        }
        self.inner.admin.send_modify(|a| {
            a.standalone = true;
            a.discard_my_data = false;
        });
        Ok(())
    }

    /// Online verify (`drbdadm verify`): compares the whole volume with the peer's copy, 4 KiB
    /// block by block (SHA-256), marks the blocks that differ out of sync and counts them; they
    /// are resynced on the next connect (`disconnect`, then `connect`). Only while Connected,
    /// with an UpToDate disk, and one at a time.
    pub async fn verify(&self) -> Result<VerifyReport, VolumeError> {
        verify::run(&self.inner).await
    }

    /// Test support, not part of the stable API: from now on, every flush of the local disk
    /// fails with EIO, as after the kernel lost a writeback, until the volume stops.
    #[doc(hidden)]
    pub fn inject_local_flush_errors(&self) {
        warn!(volume = %self.inner.config.name, "test: injecting local flush errors");
        self.inner.disk.inject_flush_errors();
    }

    /// Test support, not part of the stable API: from now on, local reads and writes touching
    /// `[offset, offset + len)` fail with EIO, as a failing disk's would, until the volume
    /// stops. It exercises `on_io_error` without a broken disk.
    #[doc(hidden)]
    pub fn inject_local_io_errors(&self, offset: u64, len: u64) {
        warn!(volume = %self.inner.config.name, offset, len, "test: injecting local I/O errors");
        self.inner.disk.inject_errors(offset, len);
    }

    /// Stops cleanly: NBD drained and stopped, the peer told, the backing flushed, the metadata
    /// closed with its clean flag (this node restarts as secondary).
    pub async fn stop(self) {
        let inner = &self.inner;
        roles::stop_nbd(inner).await;
        inner.cancel.cancel();
        inner.tasks.close();
        inner.tasks.wait().await;
        *inner.gate.write().await = None;
        // The clean flag tells the next start that no extent of the activity log needs a
        // resync, which holds only once every acknowledged write is on the disk, not in a cache
        // a power cut would empty (DRBD flushes its lower device on `down` too).
        if !inner.is_detached()
            && let Err(error) = inner.disk.sync().await
        {
            warn!(volume = %inner.config.name, %error, "backing not flushed: metadata left as after a crash (the activity log is replayed at the next start)");
            return;
        }
        let result = inner
            .meta
            .try_call(|m| {
                m.update(|s| {
                    s.primary = false;
                    s.ids.set_role(false);
                })
            })
            .await;
        if let Err(error) = result {
            warn!(volume = %inner.config.name, %error, "cannot record the demotion");
        }
        match inner.meta.close().await {
            Ok(()) => info!(volume = %inner.config.name, "volume stopped"),
            Err(error) => warn!(volume = %inner.config.name, %error, "metadata not closed cleanly"),
        }
    }

    /// Where NBD is served while primary.
    pub fn nbd_addr(&self) -> Option<SocketAddr> {
        self.inner.control().nbd
    }

    /// The volume as an NBD export, for serving it elsewhere or writing to it in-process (tests,
    /// tools). Writes are refused (EPERM) unless primary.
    pub fn export(&self) -> VolumeExport {
        VolumeExport::new(Arc::clone(&self.inner))
    }
}

/// Opens the backing and the metadata (both blocking).
fn open(
    backing: &crate::volume::config::Backing,
    direct_io: bool,
    al_extents: usize,
    dir: &Path,
) -> Result<(LocalDisk, Meta), VolumeError> {
    let (disk, created) =
        LocalDisk::open_or_create(backing, direct_io).map_err(|source| VolumeError::Backing {
            path: backing.path.clone(),
            source,
        })?;
    let meta = match Meta::open_with(dir, al_extents) {
        Ok(mut meta) => {
            if created {
                // The metadata describes data that is gone: nothing here can be trusted.
                warn!(dir = %dir.display(), "backing recreated under existing metadata: Inconsistent");
                meta.update(|s| s.disk = meta::DiskState::Inconsistent)?;
                meta.set_all_out_of_sync()?;
            }
            meta
        }
        Err(MetaError::Missing { .. }) => {
            // Only a backing we created is known to hold zeroes, like a new peer's.
            let disk_state = if created {
                meta::DiskState::UpToDate
            } else {
                meta::DiskState::Inconsistent
            };
            Meta::create_with(dir, backing.size, disk_state, al_extents)?
        }
        Err(error) => return Err(error.into()),
    };
    Ok((disk, meta))
}
