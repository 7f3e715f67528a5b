//! The data the runs move, generated deterministically: the initial sync's tree (most files
//! small, a few large), the delta's file and its changed regions, and the latency's 4 KiB
//! contents; and the comparison of two trees.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Files per directory of the tree.
const PER_DIR: usize = 100;
/// The largest small file.
const SMALL_MAX: u64 = 64 << 10;

/// SplitMix64: fast, and the same bytes on every machine.
#[derive(Debug, Clone)]
pub(crate) struct Prng(u64);

impl Prng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// The sizes of the tree's files, summing to `total`: a thousandth of them (at least one) large,
/// sharing what the small ones leave; the small ones uniform below `min(64 KiB, total / files)`.
pub(crate) fn file_sizes(files: usize, total: u64) -> Vec<u64> {
    if files == 0 {
        return Vec::new();
    }
    let large = (files / 1000).max(1);
    let small = files - large;
    let small_max = SMALL_MAX.min(total / files as u64).max(1);
    let mut prng = Prng::new(files as u64);
    let mut sizes: Vec<u64> = (0..small).map(|_| prng.next_u64() % small_max).collect();
    let rest = total.saturating_sub(sizes.iter().sum());
    let each = rest / large as u64;
    for i in 0..large {
        let extra = if i == 0 { rest % large as u64 } else { 0 };
        sizes.push(each + extra);
    }
    // The large files spread over the tree rather than at its end.
    let stride = files / large;
    for i in 0..large {
        sizes.swap(small + i, i * stride);
    }
    sizes
}

/// The path of file `i` in the tree: `dNNN/fNNNNN.bin`.
pub(crate) fn file_path(i: usize) -> PathBuf {
    PathBuf::from(format!("d{:03}/f{i:05}.bin", i / PER_DIR))
}

/// Writes the tree under `root` (created); returns the files' count and bytes.
pub(crate) fn write_tree(root: &Path, files: usize, total: u64) -> anyhow::Result<(usize, u64)> {
    let sizes = file_sizes(files, total);
    let mut buf = vec![0u8; 1 << 20];
    for (i, &size) in sizes.iter().enumerate() {
        let path = root.join(file_path(i));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut prng = Prng::new(i as u64 + 1);
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            prng.fill(&mut buf[..n]);
            file.write_all(&buf[..n])?;
            left -= n as u64;
        }
    }
    Ok((files, sizes.iter().sum()))
}

/// Writes the delta's file, `size` pseudo-random bytes.
pub(crate) fn write_random_file(path: &Path, size: u64, seed: u64) -> anyhow::Result<()> {
    let mut file =
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut prng = Prng::new(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        prng.fill(&mut buf[..n]);
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// The regions a 1% change rewrites: `regions` runs of `change / regions` bytes, each in the
/// middle of its share of the file. Offsets and lengths are whole 4 KiB multiples when the
/// sizes are.
pub(crate) fn change_regions(size: u64, change: u64, regions: u64) -> Vec<(u64, u64)> {
    let regions = regions.max(1);
    let len = change / regions;
    let share = size / regions;
    (0..regions)
        .map(|r| {
            let offset = (r * share + share / 2).saturating_sub(len / 2) / 4096 * 4096;
            (offset, len.min(size - offset))
        })
        .collect()
}

/// Rewrites the regions of `path` in place with new pseudo-random bytes (the file's other
/// bytes, and its size, stay).
pub(crate) fn change_in_place(
    path: &Path,
    regions: &[(u64, u64)],
    seed: u64,
) -> anyhow::Result<()> {
    let mut file = File::options()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut prng = Prng::new(seed);
    for &(offset, len) in regions {
        let mut buf = vec![0u8; len as usize];
        prng.fill(&mut buf);
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(&buf)?;
    }
    Ok(())
}

/// The content of latency change `i` of round `round`: 4 KiB, different every time.
pub(crate) fn change_content(round: usize, i: usize) -> Vec<u8> {
    let mut content = vec![0u8; super::CHANGE_BYTES];
    Prng::new(((round as u64) << 32) | i as u64).fill(&mut content);
    content
}

/// Every regular file under `root`, relative, with its size.
pub(crate) fn list_tree(root: &Path) -> anyhow::Result<BTreeMap<PathBuf, u64>> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                let path = entry.path();
                let relative = path.strip_prefix(root).unwrap_or(&path).to_owned();
                files.insert(relative, entry.metadata()?.len());
            }
        }
    }
    Ok(files)
}

/// Whether `copy` lists the same files with the same sizes as `original` (cheap: no reads).
pub(crate) fn same_listing(original: &BTreeMap<PathBuf, u64>, copy: &Path) -> bool {
    list_tree(copy).is_ok_and(|listing| &listing == original)
}

/// Fails unless every file of `original` is in `copy` with the same bytes, and `copy` has no
/// other file.
pub(crate) fn verify_copy(original: &Path, copy: &Path) -> anyhow::Result<()> {
    let (a, b) = (list_tree(original)?, list_tree(copy)?);
    if a != b {
        let missing = a.keys().filter(|k| !b.contains_key(*k)).count();
        let extra = b.keys().filter(|k| !a.contains_key(*k)).count();
        bail!(
            "{} differs from {}: {} files against {}, {missing} missing, {extra} extra",
            copy.display(),
            original.display(),
            b.len(),
            a.len()
        );
    }
    for path in a.keys() {
        if !same_bytes(&original.join(path), &copy.join(path))? {
            bail!("{} differs in content", copy.join(path).display());
        }
    }
    Ok(())
}

/// Whether two files hold the same bytes.
pub(crate) fn same_bytes(a: &Path, b: &Path) -> anyhow::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{change_regions, file_path, file_sizes};

    #[test]
    fn the_tree_is_mostly_small_files_and_sums_to_its_size() {
        let sizes = file_sizes(10_000, 1 << 30);
        assert_eq!(sizes.len(), 10_000);
        assert_eq!(sizes.iter().sum::<u64>(), 1 << 30);
        let large = sizes.iter().filter(|&&s| s > 64 << 10).count();
        assert_eq!(large, 10);
        assert_eq!(file_sizes(10_000, 1 << 30), sizes, "deterministic");
        // A small tree still sums up.
        assert_eq!(file_sizes(50, 1 << 20).iter().sum::<u64>(), 1 << 20);
        assert_eq!(file_path(1234).to_str(), Some("d012/f01234.bin"));
    }

    #[test]
    fn a_one_percent_change_is_spread_in_regions() {
        let regions = change_regions(100 << 20, 1 << 20, 8);
        assert_eq!(regions.len(), 8);
        assert_eq!(regions.iter().map(|r| r.1).sum::<u64>(), 1 << 20);
        assert!(regions.windows(2).all(|w| w[0].0 + w[0].1 < w[1].0));
        assert!(regions.iter().all(|r| r.0 % 4096 == 0));
    }
}
