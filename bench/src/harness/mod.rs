//! What the failover, nbd and sync benchmarks share: `fulcrum run` (and other programs) as
//! child processes with their control sockets, issue goals with their table, and the machine
//! description, medians and result files of a report.

mod fulcrum_process;
mod goals;
mod results;

pub(crate) use self::fulcrum_process::{Running, ask, pair_ports, start_fulcrum};
pub use self::goals::Goal;
pub(crate) use self::goals::{render_goals, render_goals_by};
pub use self::results::mib_per_s;
pub(crate) use self::results::{
    cores, cpu_model_or_unknown, filesystem_of, first_line, free_page_reporting, kernel,
    markdown_header, median_of, number, version_line, warn_if_free_page_reporting, write_files,
};
