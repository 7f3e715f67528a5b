//! Seed 004's site for `tests/seed004.rs`: the lab's topology ([`fulcrum_lab::seed004`]) run on
//! the `fulcrum` binary under test, with `fulcrum-bench` origins served in-process on a runtime
//! of the test's own, each bound inside its node's namespace.

use std::{
    any::Any,
    ops::{Deref, DerefMut},
    path::Path,
};

use fulcrum_bench::origin::{self, OriginOptions};
use fulcrum_lab::{
    netns::Netns,
    seed004::{Options, OriginSpec, Seed004},
};
use tokio::runtime::Runtime;

/// The running site, and the runtime its origins serve on. Field order is drop order: the site
/// (origins first) before the runtime their tasks run on.
pub struct Site {
    site: Seed004,
    _runtime: Runtime,
}

impl Site {
    /// Builds the site and waits until it has settled (see [`Seed004::start`]).
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// As [`Site::start`], with each upload directory on a tmpfs of `uploads_tmpfs` (`"4m"`).
    pub fn start_with(uploads_tmpfs: Option<&str>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime.handle().clone();
        let start_origin = move |ns: &Netns, spec: &OriginSpec| -> Box<dyn Any + Send> {
            let options = OriginOptions {
                name: spec.name.to_owned(),
                files: Some(spec.files.clone()),
                ..OriginOptions::default()
            };
            // The listener is bound on a thread inside the namespace; its accept loop then runs
            // on the runtime's workers, as accepted connections belong to the listener's
            // namespace wherever they are served.
            let origin = ns
                .enter(|| handle.block_on(origin::start(spec.listen, options)))
                .unwrap();
            Box::new(origin)
        };
        let site = Seed004::start(Options {
            fulcrum: Path::new(env!("CARGO_BIN_EXE_fulcrum")),
            origins: &start_origin,
            uploads_tmpfs,
        });
        Self {
            site,
            _runtime: runtime,
        }
    }
}

impl Deref for Site {
    type Target = Seed004;

    fn deref(&self) -> &Seed004 {
        &self.site
    }
}

impl DerefMut for Site {
    fn deref_mut(&mut self) -> &mut Seed004 {
        &mut self.site
    }
}
