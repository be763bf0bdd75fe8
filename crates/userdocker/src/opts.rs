//! The options file, /var/lib/rancher/conf/docker.
//!
//! RancherOS's docker start sourced this shell file and passed
//! `$DOCKER_OPTS` to dockerd, word-split. OxOS reads it without a shell, so
//! only what such files hold in practice is taken:
//!
//! - `DOCKER_OPTS=VALUE` (also after `export`): VALUE is one shell word,
//!   quoted or not; `$DOCKER_OPTS` / `${DOCKER_OPTS}` in it stands for the
//!   value so far, so that a line can append to an earlier one;
//! - `export NAME=VALUE`: a variable for dockerd's environment, as sourcing
//!   the file exported it;
//! - blank lines and comments.
//!
//! Any other line is named in a warning and ignored; any other `$`
//! expansion, or a backquote, is an error: a shell would have expanded it,
//! and passing it on as text would be a silent difference.

use std::path::Path;

use crate::error::{Error, Result};

/// Where the options file is, on a running system.
pub const PATH: &str = "/var/lib/rancher/conf/docker";

/// What the options file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerOpts {
    /// `$DOCKER_OPTS`, word-split.
    pub args: Vec<String>,
    /// The `export NAME=VALUE` lines.
    pub env: Vec<(String, String)>,
    /// One per line that is ignored.
    pub warnings: Vec<String>,
}

/// Reads the options file at `path`; an absent file says nothing.
pub fn read(path: &Path) -> Result<DockerOpts> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerOpts::default()),
        Err(source) => Err(Error::ReadOpts {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Parses the text of an options file; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<DockerOpts> {
    let mut opts = DockerOpts::default();
    let mut value = String::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let syntax = |reason: String| Error::OptsSyntax {
            path: path.to_owned(),
            line: n,
            reason,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (exported, line) = match line.strip_prefix("export ") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, line),
        };
        let Some((name, rest)) = line.split_once('=').filter(|(name, _)| is_name(name)) else {
            opts.warnings.push(format!(
                "{}:{n}: ignored: only DOCKER_OPTS=... and export NAME=... lines are read",
                path.display()
            ));
            continue;
        };
        if name != "DOCKER_OPTS" && !exported {
            opts.warnings.push(format!(
                "{}:{n}: {name} is ignored: it is not exported (export {name}=... passes it to dockerd)",
                path.display()
            ));
            continue;
        }
        let words = shlex::split(rest).ok_or_else(|| syntax("unbalanced quotes".to_string()))?;
        let word = match words.as_slice() {
            [] => String::new(),
            [word] => word.clone(),
            _ => {
                return Err(syntax(format!(
                    "{name}= takes one word: quote the value ({name}=\"{}\")",
                    words.join(" ")
                )))
            }
        };
        if word.contains('`') {
            return Err(syntax("command substitution is not supported".to_string()));
        }
        let word = word
            .replace("${DOCKER_OPTS}", &value)
            .replace("$DOCKER_OPTS", &value);
        if word.contains('$') {
            return Err(syntax(format!(
                "variables other than $DOCKER_OPTS are not supported yet in {name}"
            )));
        }
        if name == "DOCKER_OPTS" {
            value = word;
        } else {
            opts.env.retain(|(n, _)| n != name);
            opts.env.push((name.to_string(), word));
        }
    }
    opts.args = value.split_whitespace().map(str::to_string).collect();
    Ok(opts)
}

/// A shell variable name.
fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<DockerOpts> {
        parse(text, Path::new("/conf/docker"))
    }

    #[test]
    fn docker_opts_is_word_split_and_may_append_to_itself() {
        let opts = parsed(
            "# options\n\
             DOCKER_OPTS=\"--debug  --mtu 1400\"\n\
             export DOCKER_OPTS=\"$DOCKER_OPTS --label a=b\" # and a label\n\
             DOCKER_OPTS=${DOCKER_OPTS}' --ipv6'\n",
        )
        .unwrap();
        assert_eq!(
            opts.args,
            ["--debug", "--mtu", "1400", "--label", "a=b", "--ipv6"]
        );
        assert!(opts.env.is_empty());
        assert!(opts.warnings.is_empty(), "{:?}", opts.warnings);
        assert!(parsed("DOCKER_OPTS=\n").unwrap().args.is_empty());
        assert!(parsed("").unwrap().args.is_empty());
    }

    #[test]
    fn exported_variables_go_to_the_environment_and_others_are_named() {
        let opts = parsed(
            "export HTTP_PROXY='http://p:3128'\n\
             TMPDIR=/var/tmp\n\
             ulimit -n 4096\n",
        )
        .unwrap();
        assert_eq!(
            opts.env,
            [("HTTP_PROXY".to_string(), "http://p:3128".to_string())]
        );
        assert_eq!(opts.warnings.len(), 2, "{:?}", opts.warnings);
        assert!(opts.warnings[0].starts_with("/conf/docker:2: TMPDIR is ignored"));
        assert!(opts.warnings[1].starts_with("/conf/docker:3: ignored"));
    }

    #[test]
    fn what_a_shell_would_expand_is_an_error_with_its_line() {
        let cases = [
            (
                "\nDOCKER_OPTS=\"--data-root $HOME/d\"",
                "/conf/docker:2: variables other than $DOCKER_OPTS are not supported yet in DOCKER_OPTS",
            ),
            (
                "DOCKER_OPTS=\"`cat /x`\"",
                "/conf/docker:1: command substitution is not supported",
            ),
            ("DOCKER_OPTS=\"--debug", "/conf/docker:1: unbalanced quotes"),
            (
                "DOCKER_OPTS=--debug --ipv6",
                "/conf/docker:1: DOCKER_OPTS= takes one word: quote the value (DOCKER_OPTS=\"--debug --ipv6\")",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parsed(text).unwrap_err().to_string(), want, "{text}");
        }
    }

    #[test]
    fn an_absent_file_says_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read(&dir.path().join("docker")).unwrap(),
            DockerOpts::default()
        );
        // A directory where the file should be cannot be read.
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("failed to read "), "{err}");
    }
}
