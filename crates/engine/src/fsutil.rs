//! Small file helpers: atomic writes and timestamps.

use std::path::Path;

/// Writes `bytes` to `path` so that a crash leaves either the old or the new
/// content, synced to the disk (`atomic_file`).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    atomic_file::write(path, bytes)
}

/// Replaces `path` through a rename without syncing: for files regenerated at
/// every start (hostname, hosts, resolv.conf, run.json), where a crash may
/// lose them but a reader never sees half of one.
pub fn write_replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    atomic_file::Options::new()
        .durable(false)
        .write(path, bytes)
}

/// Now, in RFC 3339 with nanoseconds, as Docker writes times.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Parses an RFC 3339 time; None for "" or the zero time.
pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// "10m", "1g", "512k", "100" -> bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok().map(|n| n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("x"), None);
    }
}
