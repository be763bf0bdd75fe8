//! Polling the datasources: all in parallel, each with backoff, the first
//! answer wins, and an overall timeout.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::source::Source;
use crate::userdata::{self, UserData};
use crate::{disk, http};

/// How [`fetch`] polls.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// How long to wait for an answer in all; after it, [`fetch`] returns
    /// whatever it has (nothing) even if some source still hangs.
    pub timeout: Duration,
    /// The kernel command line, for the `cmdline` source (the caller reads
    /// /proc/cmdline; the library never does).
    pub cmdline: String,
    /// Where udev keeps links to block devices by filesystem label.
    pub by_label_dir: PathBuf,
    /// Whether to look for labelled devices with `blkid` when the link in
    /// [`Self::by_label_dir`] is missing (there is no udev in the initrd).
    pub scan_labels: bool,
    /// The wait before the second try of a source that is not available
    /// yet; it doubles after each try up to [`Self::max_retry`].
    pub first_retry: Duration,
    /// The longest wait between two tries of one source.
    pub max_retry: Duration,
    /// How long one HTTP request (connect and answer) may take before the
    /// try counts as "not available yet".
    pub request_timeout: Duration,
}

impl FetchOptions {
    /// Options with the given overall timeout and defaults for the rest.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            cmdline: String::new(),
            by_label_dir: PathBuf::from("/dev/disk/by-label"),
            scan_labels: true,
            first_retry: Duration::from_millis(250),
            max_retry: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// The same options with the kernel command line set.
    pub fn with_cmdline(mut self, cmdline: impl Into<String>) -> Self {
        self.cmdline = cmdline.into();
        self
    }
}

impl Default for FetchOptions {
    /// A 60 second timeout, as RancherOS waits for metadata services.
    fn default() -> Self {
        Self::new(Duration::from_secs(60))
    }
}

/// What the winning datasource gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// The source that answered.
    pub source: Source,
    /// Its decoded user-data, if it had any.
    pub user_data: Option<UserData>,
    /// Its metadata (`metadata.source` names the source).
    pub metadata: Metadata,
}

/// A source's raw answer.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub user_data: Option<Vec<u8>>,
    pub metadata: Metadata,
}

/// Why one try of a source gave no answer.
#[derive(Debug)]
pub(crate) enum Fail {
    /// Not available yet (connection refused, device missing, ...): retry.
    NotYet(String),
    /// Can never answer in this boot (no `cloud-config-url=`): stop polling
    /// it, but it is not an error.
    Absent(String),
    /// Failed for good: stop polling it and report the error.
    Fatal(Error),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Fatal(e)
    }
}

pub(crate) type Attempt<T> = std::result::Result<T, Fail>;

/// How one source's polling ended.
enum Outcome {
    Answered(Fetched),
    Absent,
    Failed(Error),
    /// Still not available at the deadline.
    Pending,
}

/// Polls `sources` in parallel until one answers or `options.timeout` has
/// passed.
///
/// - A source that is "not available yet" (connection refused or timed
///   out, HTTP 5xx, device or directory missing) is tried again after a
///   wait that doubles from `first_retry` up to `max_retry`.
/// - HTTP 404 for user-data is an answer without user-data.
/// - The first source to answer wins. When several answers are ready at the
///   moment the first one is taken (they finished while it was being
///   handled), the one earlier in `sources` wins.
/// - A source that hangs (a server that accepts and never replies, a stuck
///   device) is abandoned at the timeout; so is every other source.
///
/// Returns `Ok(None)` when no source answered before the timeout or every
/// source was absent (such as `cmdline` with no `cloud-config-url=`), and
/// [`Error::NoAnswer`] listing the failures when no source answered and at
/// least one failed for good (bad user-data, HTTP 403, unreadable file).
pub async fn fetch(sources: &[Source], options: &FetchOptions) -> Result<Option<Fetched>> {
    let deadline = Instant::now() + options.timeout;
    let options = Arc::new(options.clone());
    let mut tasks = JoinSet::new();
    for (index, source) in sources.iter().cloned().enumerate() {
        let options = Arc::clone(&options);
        tasks.spawn(async move { (index, poll_source(source, &options, deadline).await) });
    }
    let mut failures = Vec::new();
    loop {
        let joined = match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Err(_) => {
                tracing::warn!(timeout = ?options.timeout, "no datasource answered before the timeout");
                break;
            }
            Ok(None) => break,
            Ok(Some(joined)) => joined,
        };
        let mut ready = Vec::new();
        collect(joined, &mut ready, &mut failures);
        while let Some(joined) = tasks.try_join_next() {
            collect(joined, &mut ready, &mut failures);
        }
        if let Some((_, fetched)) = ready.into_iter().min_by_key(|(index, _)| *index) {
            tracing::info!(source = %fetched.source, "datasource answered");
            return Ok(Some(fetched));
        }
    }
    tasks.abort_all();
    if failures.is_empty() {
        Ok(None)
    } else {
        Err(Error::NoAnswer(failures))
    }
}

fn collect(
    joined: std::result::Result<(usize, Outcome), tokio::task::JoinError>,
    ready: &mut Vec<(usize, Fetched)>,
    failures: &mut Vec<Error>,
) {
    match joined {
        Ok((index, Outcome::Answered(fetched))) => ready.push((index, fetched)),
        Ok((_, Outcome::Failed(e))) => {
            tracing::warn!("{e}");
            failures.push(e);
        }
        Ok((_, Outcome::Absent | Outcome::Pending)) => {}
        Err(e) => tracing::warn!("datasource task ended abnormally: {e}"),
    }
}

async fn poll_source(source: Source, options: &FetchOptions, deadline: Instant) -> Outcome {
    let name = source.to_string();
    let mut wait = options.first_retry;
    loop {
        match attempt(&source, &name, options).await {
            Ok(answer) => {
                return match userdata::decode(&name, answer.user_data.as_deref().unwrap_or(&[])) {
                    Ok(user_data) => {
                        let mut metadata = answer.metadata;
                        metadata.source = name;
                        Outcome::Answered(Fetched {
                            source,
                            user_data,
                            metadata,
                        })
                    }
                    Err(e) => Outcome::Failed(e),
                }
            }
            Err(Fail::NotYet(reason)) => {
                tracing::debug!(source = %name, retry_in = ?wait, "not available yet: {reason}");
            }
            Err(Fail::Absent(reason)) => {
                tracing::info!(source = %name, "no data: {reason}");
                return Outcome::Absent;
            }
            Err(Fail::Fatal(e)) => return Outcome::Failed(e),
        }
        if Instant::now() + wait >= deadline {
            // Sleeping past the deadline is pointless: the task is aborted there.
            tokio::time::sleep_until(deadline).await;
            return Outcome::Pending;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(options.max_retry);
    }
}

async fn attempt(source: &Source, name: &str, options: &FetchOptions) -> Attempt<Answer> {
    match source {
        Source::Cmdline => {
            let url = cloud_config_url(&options.cmdline).ok_or_else(|| {
                Fail::Absent("no cloud-config-url= on the kernel command line".into())
            })?;
            http::url(name, &url, options).await
        }
        Source::Url(url) => http::url(name, url, options).await,
        Source::File(path) => disk::file(name, path).await,
        Source::ConfigDrive { path } => disk::configdrive(name, path.as_deref(), options).await,
        Source::NoCloud { path } => disk::nocloud(name, path.as_deref(), options).await,
        Source::Ec2 { base_url } => http::ec2(name, base_url, options).await,
        Source::Gce { base_url } => http::gce(name, base_url, options).await,
        Source::DigitalOcean { base_url } => http::digitalocean(name, base_url, options).await,
    }
}

/// The value of the last `cloud-config-url=` on a kernel command line
/// (double quotes around the value are dropped). Split on white space by
/// hand: the kernel's own quoting rules are no more than that for a URL.
pub fn cloud_config_url(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .take_while(|arg| *arg != "--")
        .filter_map(|arg| arg.strip_prefix("cloud-config-url="))
        .map(|v| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_config_url_is_found_on_the_command_line() {
        assert_eq!(
            cloud_config_url("console=ttyS0 cloud-config-url=http://a/b rancher.debug=true")
                .as_deref(),
            Some("http://a/b")
        );
        assert_eq!(
            cloud_config_url("cloud-config-url=\"http://a/b\"").as_deref(),
            Some("http://a/b")
        );
        assert_eq!(cloud_config_url("console=ttyS0"), None);
        assert_eq!(cloud_config_url("cloud-config-url="), None);
    }

    #[tokio::test]
    async fn empty_list_returns_nothing_at_once() {
        let started = std::time::Instant::now();
        let got = fetch(&[], &FetchOptions::new(Duration::from_secs(30)))
            .await
            .unwrap();
        assert!(got.is_none());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn cmdline_without_url_is_absent_not_an_error() {
        let options = FetchOptions::new(Duration::from_secs(30)).with_cmdline("console=tty0");
        let started = std::time::Instant::now();
        assert!(fetch(&[Source::Cmdline], &options).await.unwrap().is_none());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
