//! `dist/sizes.txt`: the size of every artefact, as shipped and uncompressed.

use std::fmt::Write;

/// The ISO's size target (DESIGN.md: at most 100 MB with User Docker, kernel
/// and firmware included).
pub const ISO_TARGET_BYTES: u64 = 100_000_000;

/// One line of the report.
pub struct Entry {
    pub name: String,
    /// Bytes as shipped (the file in `dist/` or in the image).
    pub size: u64,
    /// Bytes of the content once unpacked (cpio archive, files in the
    /// squashfs, virtual disk size), equal to `size` for what is not
    /// compressed as a whole.
    pub uncompressed: u64,
    pub note: String,
}

/// `12345678` -> `11.8 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The text of `sizes.txt`: a header, one aligned line per entry (bytes and
/// human-readable), and the verdict on the ISO target.
pub fn report(entries: &[Entry]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# OxOS build sizes: size as shipped, uncompressed content; bytes (human)"
    );
    let _ = writeln!(
        out,
        "{:<14} {:>24} {:>24}  note",
        "artefact", "size", "uncompressed"
    );
    for e in entries {
        let size = format!("{} ({})", e.size, human(e.size));
        let unc = format!("{} ({})", e.uncompressed, human(e.uncompressed));
        let _ = writeln!(out, "{:<14} {size:>24} {unc:>24}  {}", e.name, e.note);
    }
    if let Some(iso) = entries.iter().find(|e| e.name == "oxos.iso") {
        let verdict = if iso.size <= ISO_TARGET_BYTES {
            "within"
        } else {
            "OVER"
        };
        let _ = writeln!(
            out,
            "# oxos.iso is {verdict} the target of at most {} MB",
            ISO_TARGET_BYTES / 1_000_000
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, size: u64, uncompressed: u64) -> Entry {
        Entry {
            name: name.into(),
            size,
            uncompressed,
            note: "n".into(),
        }
    }

    #[test]
    fn every_artefact_has_a_line_with_both_sizes() {
        let text = report(&[
            entry("vmlinuz", 12_142_528, 12_142_528),
            entry("initrd.img", 3_000_000, 9_437_184),
        ]);
        let line = text.lines().find(|l| l.starts_with("initrd.img")).unwrap();
        assert!(line.contains("3000000 (2.9 MiB)"), "{line}");
        assert!(line.contains("9437184 (9.0 MiB)"), "{line}");
        assert!(text.lines().any(|l| l.starts_with("vmlinuz")));
    }

    #[test]
    fn the_iso_target_verdict_follows_the_size() {
        let ok = report(&[entry("oxos.iso", 60_000_000, 60_000_000)]);
        assert!(ok.contains("oxos.iso is within the target of at most 100 MB"));
        let over = report(&[entry("oxos.iso", 100_000_001, 100_000_001)]);
        assert!(over.contains("oxos.iso is OVER the target"));
    }

    #[test]
    fn human_sizes_pick_the_unit() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(100 * 1024 * 1024), "100.0 MiB");
    }
}
