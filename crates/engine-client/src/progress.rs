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
    bars: HashMap<String, ProgressBar>,
    /// Last status printed per layer, in plain mode.
    last: HashMap<String, String>,
}

fn plain_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg:<12}[{bar:50}] {sizes}")
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
            return match &self.multi {
                Some(m) => {
                    let _ = m.println(status);
                    Ok(())
                }
                None => self.target.line(status),
            };
        };
        match &self.multi {
            Some(multi) => {
                let bar = self.bars.entry(id.to_string()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(0).with_style(plain_style()));
                    bar.set_prefix(id.to_string());
                    bar
                });
                match bytes {
                    Some((current, total)) if total > 0 => {
                        bar.set_style(bar_style());
                        bar.set_length(total as u64);
                        bar.set_position(current.max(0) as u64);
                    }
                    _ => bar.set_style(plain_style()),
                }
                bar.set_message(status.to_string());
                Ok(())
            }
            None => {
                if self.last.get(id).map(String::as_str) == Some(status) {
                    return Ok(());
                }
                self.last.insert(id.to_string(), status.to_string());
                self.target.line(&format!("{id}: {status}"))
            }
        }
    }

    /// Leaves every line as it is last drawn.
    pub fn finish(&mut self) {
        for bar in self.bars.values() {
            bar.abandon();
        }
    }
}
