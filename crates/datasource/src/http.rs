//! The sources that answer over HTTP: `url:`, `cmdline` (its URL), and the
//! metadata services of EC2, GCE and DigitalOcean.

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

use crate::error::Error;
use crate::fetch::{Answer, Attempt, Fail, FetchOptions};
use crate::metadata::{self, Metadata};

/// One HTTP conversation of one source.
struct Http<'a> {
    name: &'a str,
    client: Client,
}

impl<'a> Http<'a> {
    fn new(name: &'a str, options: &FetchOptions) -> Attempt<Self> {
        let client = Client::builder()
            // Metadata services are link-local: a proxy from the environment
            // must not be asked for them.
            .no_proxy()
            .connect_timeout(options.request_timeout)
            .timeout(options.request_timeout)
            .tls_certs_only(tls_roots::reqwest_roots())
            .build()
            .map_err(|e| Error::Http {
                source_name: name.to_owned(),
                url: String::new(),
                message: e.to_string(),
            })?;
        Ok(Self { name, client })
    }

    /// Sends a request; `Ok(None)` when the server answers one of
    /// `absent` (404 at least). Connection failures, timeouts, 5xx and 429
    /// mean "not available yet".
    async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        absent: &[StatusCode],
    ) -> Attempt<Option<Vec<u8>>> {
        let mut request = self.client.request(method, url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.map_err(|e| self.error(url, e))?;
        let status = response.status();
        if absent.contains(&status) {
            return Ok(None);
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Fail::NotYet(format!("{url} answered {status}")));
        }
        if !status.is_success() {
            return Err(Fail::Fatal(Error::HttpStatus {
                source_name: self.name.to_owned(),
                url: url.to_owned(),
                status: status.as_u16(),
            }));
        }
        let body = response.bytes().await.map_err(|e| self.error(url, e))?;
        Ok(Some(body.to_vec()))
    }

    async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Attempt<Option<Vec<u8>>> {
        self.request(Method::GET, url, headers, &[StatusCode::NOT_FOUND])
            .await
    }

    /// A text resource, trimmed; `None` when missing or empty.
    async fn text(&self, url: &str, headers: &[(&str, &str)]) -> Attempt<Option<String>> {
        Ok(self
            .get(url, headers)
            .await?
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .filter(|s| !s.is_empty()))
    }

    fn error(&self, url: &str, e: reqwest::Error) -> Fail {
        if e.is_builder() {
            Fail::Fatal(Error::Http {
                source_name: self.name.to_owned(),
                url: url.to_owned(),
                message: e.to_string(),
            })
        } else {
            // Refused, reset, timed out, cut short: the service may come up.
            Fail::NotYet(format!("{url}: {}", error_chain(&e)))
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// User-data at a URL (the `url:` source and `cmdline`'s
/// `cloud-config-url=`). 404 is an answer without user-data.
pub(crate) async fn url(name: &str, url: &str, options: &FetchOptions) -> Attempt<Answer> {
    let http = Http::new(name, options)?;
    Ok(Answer {
        user_data: http.get(url, &[]).await?,
        metadata: Metadata::default(),
    })
}

/// EC2 with IMDSv2: a session token from `PUT /latest/api/token`, sent with
/// every GET. A service that does not know the token call (404, 405) is
/// read as IMDSv1, without a token. A service without `/latest/meta-data/`
/// is not EC2 (GCE and others answer at the same address): absent.
pub(crate) async fn ec2(name: &str, base_url: &str, options: &FetchOptions) -> Attempt<Answer> {
    let http = Http::new(name, options)?;
    let base = base(base_url);
    let token = http
        .request(
            Method::PUT,
            &format!("{base}/latest/api/token"),
            &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
            &[StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED],
        )
        .await?
        .map(|t| String::from_utf8_lossy(&t).trim().to_owned());
    let headers: Vec<(&str, &str)> = match &token {
        Some(t) => vec![("X-aws-ec2-metadata-token", t.as_str())],
        None => Vec::new(),
    };
    let meta = format!("{base}/latest/meta-data");
    // Every EC2 instance has a meta-data listing; a server without one is
    // another cloud's metadata service at the same address.
    if http.get(&format!("{meta}/"), &headers).await?.is_none() {
        return Err(Fail::Absent(format!("{meta}/ is not there: not EC2")));
    }
    let user_data = http
        .get(&format!("{base}/latest/user-data"), &headers)
        .await?;
    let hostname = match http.text(&format!("{meta}/hostname"), &headers).await? {
        Some(h) => Some(h),
        None => {
            http.text(&format!("{meta}/local-hostname"), &headers)
                .await?
        }
    };
    let mut public_keys = Vec::new();
    // The listing has one `INDEX=NAME` a line.
    let listing = http.text(&format!("{meta}/public-keys/"), &headers).await?;
    for line in listing.iter().flat_map(|l| l.lines()) {
        let index = line.split('=').next().unwrap_or_default().trim();
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let url = format!("{meta}/public-keys/{index}/openssh-key");
        if let Some(key) = http.text(&url, &headers).await? {
            public_keys.extend(metadata::keys_from(Some(&Value::String(key))));
        }
    }
    Ok(Answer {
        user_data,
        metadata: Metadata {
            hostname,
            public_keys,
            ..Metadata::default()
        },
    })
}

/// GCE: user-data from the instance attribute `user-data`, the hostname,
/// and SSH keys from the instance's and the project's `ssh-keys` (and the
/// older `sshKeys`) attributes, whose lines are `USER:KEY`. Project keys are
/// skipped when the instance sets `block-project-ssh-keys` to true. A
/// service without `instance/hostname` is not GCE: absent.
pub(crate) async fn gce(name: &str, base_url: &str, options: &FetchOptions) -> Attempt<Answer> {
    let http = Http::new(name, options)?;
    let base = format!("{}/computeMetadata/v1", base(base_url));
    let headers = [("Metadata-Flavor", "Google")];
    let user_data = http
        .get(&format!("{base}/instance/attributes/user-data"), &headers)
        .await?;
    // Every GCE instance has a hostname; a server without one is another
    // cloud's metadata service at the same address.
    let hostname_url = format!("{base}/instance/hostname");
    let Some(hostname) = http.text(&hostname_url, &headers).await? else {
        return Err(Fail::Absent(format!(
            "{hostname_url} is not there: not GCE"
        )));
    };
    let block_project = http
        .text(
            &format!("{base}/instance/attributes/block-project-ssh-keys"),
            &headers,
        )
        .await?
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut places = vec![
        "instance/attributes/ssh-keys",
        "instance/attributes/sshKeys",
    ];
    if !block_project {
        places.extend(["project/attributes/ssh-keys", "project/attributes/sshKeys"]);
    }
    let mut public_keys: Vec<String> = Vec::new();
    for place in places {
        let Some(text) = http.text(&format!("{base}/{place}"), &headers).await? else {
            continue;
        };
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            // `user:ssh-rsa AAAA... comment`; a line without a user is a key.
            let key = match line.split_once(':') {
                Some((user, key)) if !user.contains(' ') => key.trim(),
                _ => line,
            };
            if !key.is_empty() && !public_keys.iter().any(|k| k == key) {
                public_keys.push(key.to_owned());
            }
        }
    }
    Ok(Answer {
        user_data,
        metadata: Metadata {
            hostname: Some(hostname),
            public_keys,
            ..Metadata::default()
        },
    })
}

/// DigitalOcean: everything from `/metadata/v1.json` (user_data, hostname,
/// public_keys, interfaces and dns for the network config). A service
/// without that document is not DigitalOcean: absent.
pub(crate) async fn digitalocean(
    name: &str,
    base_url: &str,
    options: &FetchOptions,
) -> Attempt<Answer> {
    let http = Http::new(name, options)?;
    let url = format!("{}/metadata/v1.json", base(base_url));
    let body = http
        .get(&url, &[])
        .await?
        .ok_or_else(|| Fail::Absent(format!("{url} is not there: not DigitalOcean")))?;
    let doc: Value = serde_json::from_slice(&body).map_err(|e| Error::Invalid {
        source_name: name.to_owned(),
        what: "metadata",
        message: e.to_string(),
    })?;
    Ok(Answer {
        user_data: doc
            .get("user_data")
            .and_then(Value::as_str)
            .map(|s| s.as_bytes().to_vec()),
        metadata: Metadata {
            hostname: metadata::string(&doc, "hostname"),
            public_keys: metadata::keys_from(doc.get("public_keys")),
            network: metadata::network_from_digitalocean(&doc),
            ..Metadata::default()
        },
    })
}
