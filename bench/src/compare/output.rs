//! The result files: `compare-DATE.json` (everything), `compare-DATE.md` (the tables),
//! `latency-DATE.svg` (the chart) and `latest.md` (a copy of the newest tables).

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Where each file of one run goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutputPaths {
    pub(crate) json: PathBuf,
    pub(crate) markdown: PathBuf,
    pub(crate) svg: PathBuf,
    pub(crate) latest: PathBuf,
}

impl OutputPaths {
    /// The files of a run made on `date` (`YYYY-MM-DD`) in `dir`.
    pub(crate) fn new(dir: &Path, date: &str) -> Self {
        Self {
            json: dir.join(format!("compare-{date}.json")),
            markdown: dir.join(format!("compare-{date}.md")),
            svg: dir.join(format!("latency-{date}.svg")),
            latest: dir.join("latest.md"),
        }
    }

    /// The files a run writes; the chart only when there was a fixed-rate run to draw.
    pub(crate) fn files(&self, with_svg: bool) -> Vec<PathBuf> {
        let mut files = vec![self.json.clone(), self.markdown.clone()];
        if with_svg {
            files.push(self.svg.clone());
        }
        files.push(self.latest.clone());
        files
    }
}

/// Writes every file, creating the directory if needed.
pub(crate) fn write_outputs(
    paths: &OutputPaths,
    json: &str,
    markdown: &str,
    svg: Option<&str>,
) -> anyhow::Result<()> {
    if let Some(dir) = paths.json.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut files = vec![
        (&paths.json, json),
        (&paths.markdown, markdown),
        (&paths.latest, markdown),
    ];
    if let Some(svg) = svg {
        files.push((&paths.svg, svg));
    }
    for (path, text) in files {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{OutputPaths, write_outputs};

    #[test]
    fn writes_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results");
        let paths = OutputPaths::new(&out, "2026-11-21");
        write_outputs(&paths, "{}", "# table\n", Some("<svg/>")).unwrap();
        for path in paths.files(true) {
            assert!(path.is_file(), "{}", path.display());
        }
        assert_eq!(
            std::fs::read_to_string(out.join("latest.md")).unwrap(),
            "# table\n"
        );
        assert!(out.join("compare-2026-11-21.json").is_file());
        assert!(out.join("latency-2026-11-21.svg").is_file());
    }
}
