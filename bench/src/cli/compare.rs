//! `fulcrum-bench compare` (being written).

/// Options of `fulcrum-bench compare`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("fulcrum-bench compare is not built yet")
}
