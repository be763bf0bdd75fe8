//! Pull progress, shown like docker's: one line per layer.
//!
//! On a terminal each layer's line is updated in place (indicatif), with a bar
//! while bytes move: `a3ed95caeb02: Downloading [=====>      ]  1.2MB/3.4MB`.
//! Otherwise each change of a layer's status is printed once as a plain line
//! (`a3ed95caeb02: Pull complete`), and byte counts are left out, so that logs
//! stay short.

use std::collections::HashMap;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::commands::{err_out, out};
use crate::error::Result;
use crate::format::human_size;

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// stdout (`pull`).
    Stdout,
    /// stderr (`run` pulling a missing image: stdout is the container's).
    Stderr,
    /// Nowhere (`pull -q`).
    Quiet,
}

impl Target {
    /// Prints one whole line.
    pub fn line(self, text: &str) -> Result<()> {
        let line = format!("{text}\n");
        match self {
            Target::Stdout => out(line.as_bytes()),
            Target::Stderr => err_out(line.as_bytes()),
            Target::Quiet => Ok(()),
        }
    }

    fn is_terminal(self) -> bool {
        match self {
            Target::Stdout => std::io::stdout().is_terminal(),
            Target::Stderr => std::io::stderr().is_terminal(),
            Target::Quiet => false,
        }
    }
}

/// The display of one pull.
pub struct Progress {
    target: Target,
    multi: Option<MultiProgress>,
    /// Each layer's line on a terminal, and whether it shows a bar now.
    bars: HashMap<String, (ProgressBar, bool)>,
    /// Last status printed per layer, in plain mode.
    last: HashMap<String, String>,
}

fn plain_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn line_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg} [{bar:30}] {sizes}")
        .map(|s| {
            s.progress_chars("=> ").with_key(
                "sizes",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let total = state.len().unwrap_or(0);
                    let _ = write!(
                        w,
                        "{}/{}",
                        human_size(state.pos() as i64),
                        human_size(total as i64)
                    );
                },
            )
        })
        .unwrap_or_else(|_| plain_style())
}

/// Whether a status carries a byte count worth a bar (docker draws bars for
/// these two only).
fn shows_bar(status: &str, bytes: Option<(i64, i64)>) -> bool {
    (status.starts_with("Downloading") || status.starts_with("Extracting"))
        && bytes.is_some_and(|(_, total)| total > 0)
}

impl Progress {
    /// Starts a display on `target`.
    pub fn new(target: Target) -> Self {
        let multi = target.is_terminal().then(|| {
            let draw = match target {
                Target::Stderr => ProgressDrawTarget::stderr(),
                _ => ProgressDrawTarget::stdout(),
            };
            MultiProgress::with_draw_target(draw)
        });
        Progress {
            target,
            multi,
            bars: HashMap::new(),
            last: HashMap::new(),
        }
    }

    /// Shows one message of the engine: `id` is the layer (None for general
    /// lines such as "Digest: ..."), `bytes` the (current, total) progress.
    pub fn update(
        &mut self,
        id: Option<&str>,
        status: &str,
        bytes: Option<(i64, i64)>,
    ) -> Result<()> {
        if self.target == Target::Quiet {
            return Ok(());
        }
        let Some(id) = id.filter(|i| !i.is_empty()) else {
            // General lines ("Digest: ...") go below the layers, as in docker.
            return match &self.multi {
                Some(multi) => {
                    let line = multi.add(ProgressBar::new(0).with_style(line_style()));
                    line.set_message(status.to_string());
                    line.abandon();
                    Ok(())
                }
                None => self.target.line(status),
            };
        };
        match &self.multi {
            Some(multi) => {
                let bar_now = shows_bar(status, bytes);
                let style = || if bar_now { bar_style() } else { plain_style() };
                let (bar, has_bar) = self.bars.entry(id.to_string()).or_insert_with(|| {
                    let bar = ProgressBar::new(0).with_style(style());
                    bar.set_prefix(id.to_string());
                    bar.set_message(status.to_string());
                    (multi.add(bar), bar_now)
                });
                // Message and counts first, then the style: each call redraws.
                bar.set_message(status.to_string());
                if let (true, Some((current, total))) = (bar_now, bytes) {
                    bar.set_length(total as u64);
                    bar.set_position(current.max(0) as u64);
                }
                if *has_bar != bar_now {
                    bar.set_style(style());
                    *has_bar = bar_now;
                }
                Ok(())
            }
            None => match plain_line(&mut self.last, id, status) {
                Some(line) => self.target.line(&line),
                None => Ok(()),
            },
        }
    }

    /// Leaves every line as it is last drawn.
    pub fn finish(&mut self) {
        for (_, (bar, _)) in self.bars.drain() {
            bar.abandon();
        }
    }
}

/// Plain mode: the line to print for a layer's status, or None when the
/// layer's status has not changed (byte counts are not shown).
fn plain_line(last: &mut HashMap<String, String>, id: &str, status: &str) -> Option<String> {
    if last.get(id).map(String::as_str) == Some(status) {
        return None;
    }
    last.insert(id.to_string(), status.to_string());
    Some(format!("{id}: {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_mode_prints_each_status_change_once() {
        let mut last = HashMap::new();
        let seen: Vec<String> = [
            ("a", "Pulling fs layer"),
            ("b", "Pulling fs layer"),
            ("a", "Downloading"),
            ("a", "Downloading"),
            ("a", "Downloading"),
            ("b", "Already exists"),
            ("a", "Pull complete"),
        ]
        .iter()
        .filter_map(|(id, status)| plain_line(&mut last, id, status))
        .collect();
        assert_eq!(
            seen,
            vec![
                "a: Pulling fs layer",
                "b: Pulling fs layer",
                "a: Downloading",
                "b: Already exists",
                "a: Pull complete"
            ]
        );
    }

    #[test]
    fn bars_only_while_bytes_move() {
        assert!(shows_bar("Downloading", Some((10, 100))));
        assert!(shows_bar("Extracting", Some((0, 100))));
        assert!(!shows_bar("Pull complete", Some((0, 100))));
        assert!(!shows_bar("Downloading", None));
        assert!(!shows_bar("Downloading", Some((0, 0))));
    }
}
