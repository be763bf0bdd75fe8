//! Docker-like text output: tables, sizes, durations.
//!
//! The docker CLI formats with Go's `text/tabwriter` (minimum width 10, padding
//! 3) and the `go-units` helpers `HumanDuration` and `HumanSizeWithPrecision`.
//! These functions reproduce them so that scripts and eyes used to docker's
//! output find the same thing. Every function takes "now" as a parameter, so
//! tests run on a fixed clock.

use bollard::models::{ContainerSummary, ImageSummary};

/// Width of Docker's short ids.
pub const SHORT_ID: usize = 12;

/// Lays out rows like Go's tabwriter with docker's settings: each column but
/// the last is as wide as its widest cell plus 3 spaces, at least 10.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    const MIN_WIDTH: usize = 10;
    const PADDING: usize = 3;
    let columns = header.len();
    let mut widths = vec![MIN_WIDTH; columns];
    let all = std::iter::once(header.iter().map(|h| h.to_string()).collect::<Vec<_>>())
        .chain(rows.iter().cloned())
        .collect::<Vec<_>>();
    for row in &all {
        for (i, cell) in row.iter().enumerate().take(columns.saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count() + PADDING);
        }
    }
    let mut out = String::new();
    for row in &all {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < columns {
                let pad = widths[i] - cell.chars().count();
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// go-units `HumanDuration`: "Less than a second", "3 seconds", "About a minute",
/// "5 minutes", "About an hour", "3 hours", "2 days", "3 weeks", "4 months", "2 years".
pub fn human_duration(seconds: i64) -> String {
    let s = seconds;
    if s < 1 {
        return "Less than a second".into();
    }
    if s == 1 {
        return "1 second".into();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let minutes = s / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    // Go rounds hours: int(d.Hours() + 0.5)
    let hours = (s as f64 / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", s / 3600 / 24 / 365)
}

/// "N units ago" for a unix timestamp, as in docker's CREATED columns.
pub fn ago(created: i64, now: i64) -> String {
    format!("{} ago", human_duration(now - created))
}

/// go-units `HumanSizeWithPrecision(size, 3)`: decimal units (kB = 1000 bytes)
/// and three significant digits, as in `docker images`: "4.26MB", "128MB", "0B".
pub fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", go_g(size, 3), UNITS[unit])
}

/// go-units `BytesSize`: binary units and four significant digits, as in
/// `docker info`'s "Total Memory: 1.944GiB".
pub fn bytes_size(bytes: i64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    format!("{}{}", go_g(size, 4), UNITS[unit])
}

/// Go's `%.{precision}g` for non-negative finite numbers: shortest of fixed and
/// exponent notation, trailing zeros removed ("1.24", "128", "1e+03").
fn go_g(value: f64, precision: usize) -> String {
    if value == 0.0 {
        return "0".into();
    }
    // Round to the requested significant digits first; the exponent of the
    // rounded value decides the notation, as in Go.
    let sci = format!("{:.*e}", precision.saturating_sub(1), value);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: String| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if exp < -4 || exp >= precision as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa.to_string()), exp.abs())
    } else {
        let decimals = (precision as i32 - 1 - exp).max(0) as usize;
        trim(format!("{value:.decimals$}"))
    }
}

/// docker's `Ellipsis`: at most `max` characters, the last one "…" when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Go's `strconv.Quote` for the COMMAND column: double quotes, with `"` and `\`
/// escaped and control characters written as escapes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An id without its `sha256:` prefix, cut to 12 characters unless `full`.
pub fn short_id(id: &str, full: bool) -> String {
    if full {
        return id.to_string();
    }
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(SHORT_ID).collect()
}

/// The fields of one `docker ps` row, under the names docker's `--format`
/// templates use (ID, Image, Command, CreatedAt, RunningFor, Ports, State,
/// Status, Names, Labels), formatted as in the table.
pub fn ps_fields(
    c: &ContainerSummary,
    no_trunc: bool,
    now: i64,
) -> serde_json::Map<String, serde_json::Value> {
    let id = c.id.clone().unwrap_or_default();
    let image = c.image.clone().unwrap_or_default();
    let image = if image.starts_with("sha256:") {
        short_id(&image, no_trunc)
    } else {
        image
    };
    let command = c.command.clone().unwrap_or_default();
    let command = if no_trunc {
        command
    } else {
        ellipsis(&command, 20)
    };
    let ports = c
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let typ = p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
            match (p.ip.as_deref(), p.public_port) {
                (ip, Some(public)) => format!(
                    "{}:{public}->{}/{typ}",
                    ip.unwrap_or("0.0.0.0"),
                    p.private_port
                ),
                _ => format!("{}/{typ}", p.private_port),
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    // Names with a second slash are links (/other/alias): docker hides them.
    let names = c
        .names
        .iter()
        .flatten()
        .map(|n| n.trim_start_matches('/'))
        .filter(|n| !n.contains('/'))
        .collect::<Vec<_>>()
        .join(",");
    let mut labels: Vec<String> = c
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    let fields = [
        ("ID", if no_trunc { id } else { short_id(&id, false) }),
        ("Image", image),
        ("Command", go_quote(&command)),
        ("CreatedAt", c.created.map(go_time).unwrap_or_default()),
        (
            "RunningFor",
            c.created.map(|t| ago(t, now)).unwrap_or_default(),
        ),
        ("Ports", ports),
        ("State", c.state.map(|s| s.to_string()).unwrap_or_default()),
        ("Status", c.status.clone().unwrap_or_default()),
        ("Names", names),
        ("Labels", labels.join(",")),
    ];
    fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
        .collect()
}

/// A unix time as Go prints a `time.Time` in UTC: "2023-11-14 22:13:20 +0000 UTC".
pub fn go_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
        .unwrap_or_default()
}

/// The `docker ps` table.
pub fn ps_table(containers: &[ContainerSummary], no_trunc: bool, now: i64) -> String {
    let columns = [
        ("CONTAINER ID", "ID"),
        ("IMAGE", "Image"),
        ("COMMAND", "Command"),
        ("CREATED", "RunningFor"),
        ("STATUS", "Status"),
        ("PORTS", "Ports"),
        ("NAMES", "Names"),
    ];
    let rows: Vec<Vec<String>> = containers
        .iter()
        .map(|c| {
            let fields = ps_fields(c, no_trunc, now);
            columns
                .iter()
                .map(|(_, key)| fields[*key].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .collect();
    let header: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    table(&header, &rows)
}

/// The fields of one `docker images` row for `--format` (Repository, Tag, ID,
/// CreatedSince, CreatedAt, Size), from a row of [`image_rows`] and its image.
pub fn image_fields(row: &[String], created: i64) -> serde_json::Map<String, serde_json::Value> {
    let get = |i: usize| row.get(i).cloned().unwrap_or_default();
    [
        ("Repository", get(0)),
        ("Tag", get(1)),
        ("ID", get(2)),
        ("CreatedSince", get(3)),
        ("CreatedAt", go_time(created)),
        ("Size", get(4)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
    .collect()
}

/// One line of `docker images`: repository, tag, id, created, size.
pub fn image_rows(images: &[ImageSummary], no_trunc: bool, now: i64) -> Vec<Vec<String>> {
    let mut sorted: Vec<&ImageSummary> = images.iter().collect();
    // Newest first, as docker lists them.
    sorted.sort_by_key(|i| std::cmp::Reverse(i.created));
    let mut rows = Vec::new();
    for image in sorted {
        let id = short_id(&image.id, no_trunc);
        let created = ago(image.created, now);
        let size = human_size(image.size);
        let tags: Vec<(String, String)> = image
            .repo_tags
            .iter()
            .filter(|t| t.as_str() != "<none>:<none>")
            .map(|t| match t.rfind(':') {
                Some(i) if !t[i..].contains('/') => (t[..i].to_string(), t[i + 1..].to_string()),
                _ => (t.clone(), "<none>".to_string()),
            })
            .collect();
        if tags.is_empty() {
            // An untagged image may still carry its repository in a digest.
            let repo = image
                .repo_digests
                .iter()
                .find_map(|d| d.split_once('@').map(|(r, _)| r.to_string()))
                .unwrap_or_else(|| "<none>".into());
            rows.push(vec![repo, "<none>".into(), id, created, size]);
        } else {
            for (repo, tag) in tags {
                rows.push(vec![repo, tag, id.clone(), created.clone(), size.clone()]);
            }
        }
    }
    rows
}

/// The `docker images` table.
pub fn images_table(images: &[ImageSummary], no_trunc: bool, now: i64) -> String {
    table(
        &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        &image_rows(images, no_trunc, now),
    )
}

/// Checks a `--format` of `ps`/`images`: docker's "table ..." layouts are not
/// supported (the default table is).
pub fn check_list_template(template: &str) -> Result<(), crate::error::Error> {
    if template.trim_start().starts_with("table") {
        return Err(crate::error::Error::NotSupported(
            "a \"table\" --format (without --format the table is printed)".to_string(),
        ));
    }
    Ok(())
}

/// Applies an `inspect --format` template to one object. Supported: literal
/// text, `{{.}}`, `{{.A.B}}` and `{{json .A.B}}`; anything else is an error
/// naming the action. Values print as Go's templates print them for the
/// common cases: strings bare, numbers and booleans as written, a missing
/// field as `<no value>`, null as `<nil>`, lists of scalars as `[a b]`;
/// objects and other lists print as JSON.
pub fn apply_template(
    template: &str,
    value: &serde_json::Value,
) -> Result<String, crate::error::Error> {
    use crate::error::Error;
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| Error::Usage(format!("unclosed action in template {template:?}")))?;
        let action = after[..end]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        let (as_json, path) = match action.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, action),
        };
        if !path.starts_with('.') || path.contains(char::is_whitespace) {
            return Err(Error::NotSupported(format!(
                "the template action {{{{{action}}}}} in --format"
            )));
        }
        let mut current = Some(value);
        for key in path.split('.').filter(|k| !k.is_empty()) {
            current = current.and_then(|v| v.get(key));
        }
        match (current, as_json) {
            (None, _) => out.push_str("<no value>"),
            (Some(v), true) => out.push_str(&v.to_string()),
            (Some(v), false) => out.push_str(&go_value(v)),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn go_value(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(_) | Value::Number(_) => v.to_string(),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            format!(
                "[{}]",
                items.iter().map(go_value).collect::<Vec<_>>().join(" ")
            )
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ContainerSummary;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn durations_like_go_units() {
        let cases = [
            (0, "Less than a second"),
            (1, "1 second"),
            (3, "3 seconds"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (59 * 60, "59 minutes"),
            (60 * 60, "About an hour"),
            (89 * 60, "About an hour"),
            (90 * 60, "2 hours"),
            (47 * 3600, "47 hours"),
            (3 * 86400, "3 days"),
            (20 * 86400, "2 weeks"),
            (90 * 86400, "3 months"),
            (800 * 86400, "2 years"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    #[test]
    fn sizes_like_go_units() {
        let cases = [
            (0, "0B"),
            (999, "999B"),
            (1000, "1kB"),
            (1_234, "1.23kB"),
            (4_261_888, "4.26MB"),
            (128_000_000, "128MB"),
            (77_800_000, "77.8MB"),
            (1_500_000_000, "1.5GB"),
            // Go's %g switches to exponent form here, and so does docker.
            (999_999, "1e+03kB"),
        ];
        for (bytes, want) in cases {
            assert_eq!(human_size(bytes), want, "{bytes}");
        }
    }

    #[test]
    fn binary_sizes_like_go_units() {
        assert_eq!(bytes_size(512), "512B");
        assert_eq!(bytes_size(2_087_354_368), "1.944GiB");
        assert_eq!(bytes_size(1 << 30), "1GiB");
    }

    #[test]
    fn ps_table_like_docker() {
        let containers = vec![
            ContainerSummary {
                id: Some("4e1a2c3d5f6b7a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e".into()),
                names: Some(vec!["/syslog".into()]),
                image: Some("busybox:latest".into()),
                command: Some("sh -c 'while true; do sleep 1; done'".into()),
                created: Some(NOW - 3),
                status: Some("Up 3 seconds".into()),
                ..Default::default()
            },
            ContainerSummary {
                id: Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into()),
                names: Some(vec!["/job".into(), "/syslog/job".into()]),
                image: Some(
                    "sha256:aaaabbbbccccddddeeeeffff0000111122223333444455556666777788889999"
                        .into(),
                ),
                command: Some("true".into()),
                created: Some(NOW - 120),
                status: Some("Exited (0) 2 minutes ago".into()),
                ..Default::default()
            },
        ];
        let want = "\
CONTAINER ID   IMAGE            COMMAND                  CREATED         STATUS                     PORTS     NAMES
4e1a2c3d5f6b   busybox:latest   \"sh -c 'while true; …\"   3 seconds ago   Up 3 seconds                         syslog
0123456789ab   aaaabbbbcccc     \"true\"                   2 minutes ago   Exited (0) 2 minutes ago             job
";
        assert_eq!(ps_table(&containers, false, NOW), want);

        let full = ps_table(&containers, true, NOW);
        assert!(full.contains("\"sh -c 'while true; do sleep 1; done'\""));
        assert!(full.contains("4e1a2c3d5f6b7a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e"));
    }

    #[test]
    fn ps_fields_for_templates() {
        let c = ContainerSummary {
            id: Some("4e1a2c3d5f6b7a8c9d0e1f2a3b4c5d6e".into()),
            names: Some(vec!["/syslog".into()]),
            image: Some("busybox".into()),
            command: Some("syslogd -n".into()),
            created: Some(NOW - 3),
            state: Some(bollard::models::ContainerSummaryStateEnum::RUNNING),
            status: Some("Up 3 seconds".into()),
            labels: Some([("b".to_string(), "2".to_string()), ("a".into(), "1".into())].into()),
            ..Default::default()
        };
        let v = serde_json::Value::Object(ps_fields(&c, false, NOW));
        let t = |tpl: &str| apply_template(tpl, &v).unwrap();
        assert_eq!(
            t("{{.ID}} {{.Names}} {{.State}}"),
            "4e1a2c3d5f6b syslog running"
        );
        assert_eq!(
            t("{{.Command}}|{{.RunningFor}}"),
            "\"syslogd -n\"|3 seconds ago"
        );
        assert_eq!(t("{{.Labels}}"), "a=1,b=2");
        assert_eq!(t("{{.CreatedAt}}"), "2023-11-14 22:13:17 +0000 UTC");
    }

    #[test]
    fn images_table_like_docker() {
        let images = vec![
            ImageSummary {
                id: "sha256:1111111111112222222222223333333333334444444444445555555555556666"
                    .into(),
                repo_tags: vec!["busybox:latest".into(), "127.0.0.1:5000/busybox:v1".into()],
                created: NOW - 3 * 86400,
                size: 4_261_888,
                ..Default::default()
            },
            ImageSummary {
                id: "sha256:abcdefabcdef0000000000000000000000000000000000000000000000000000"
                    .into(),
                repo_tags: vec![],
                created: NOW - 30,
                size: 1_234,
                ..Default::default()
            },
        ];
        let want = "\
REPOSITORY               TAG       IMAGE ID       CREATED          SIZE
<none>                   <none>    abcdefabcdef   30 seconds ago   1.23kB
busybox                  latest    111111111111   3 days ago       4.26MB
127.0.0.1:5000/busybox   v1        111111111111   3 days ago       4.26MB
";
        assert_eq!(images_table(&images, false, NOW), want);
    }

    #[test]
    fn inspect_templates() {
        let v = serde_json::json!({
            "Name": "/web",
            "State": {"Pid": 4242, "Running": true, "Error": ""},
            "Config": {"Cmd": ["sh", "-c", "x"], "Labels": {"a": "b"}, "Entrypoint": null},
        });
        let t = |s: &str| apply_template(s, &v).unwrap();
        assert_eq!(t("{{.State.Pid}}"), "4242");
        assert_eq!(
            t("{{ .Name }} running={{.State.Running}}"),
            "/web running=true"
        );
        assert_eq!(t("{{.Config.Cmd}}"), "[sh -c x]");
        assert_eq!(t("{{json .Config.Labels}}"), r#"{"a":"b"}"#);
        assert_eq!(t("{{.Config.Entrypoint}}"), "<nil>");
        assert_eq!(t("{{.State.Nope}}"), "<no value>");
        assert_eq!(t("pid: {{.State.Pid}}!"), "pid: 4242!");
        assert_eq!(
            apply_template("{{range .Mounts}}x{{end}}", &v)
                .unwrap_err()
                .to_string(),
            "the template action {{range .Mounts}} in --format is not supported yet"
        );
        assert!(matches!(
            apply_template("{{.State.Pid", &v),
            Err(crate::error::Error::Usage(_))
        ));
    }

    #[test]
    fn quoting_and_ellipsis() {
        assert_eq!(go_quote(r#"echo "hi" \ x"#), r#""echo \"hi\" \\ x""#);
        assert_eq!(ellipsis("abcdef", 6), "abcdef");
        assert_eq!(ellipsis("abcdefg", 6), "abcde…");
    }
}
