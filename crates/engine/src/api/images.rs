//! `/images/...`: list, inspect, load, pull, import, tag, remove.

use super::{body_reader, json_response, AppState, Query};
use crate::error::Error;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use image_store::{ContainerConfig, Image, PullOptions, PullProgress, Removed};
use serde_json::{json, Value};
use tokio::sync::mpsc;

type ApiResult = Result<Response<Body>, Error>;

fn created_unix(img: &Image) -> i64 {
    img.created
        .as_deref()
        .and_then(crate::fsutil::parse_time)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

/// The `reference` filter of `docker images NAME`: a repository, or repository:tag.
fn matches_reference(img: &Image, pattern: &str) -> bool {
    img.repo_tags.iter().any(|t| {
        if pattern.contains(':') && !pattern.ends_with(']') {
            t == pattern
        } else {
            t.rsplit_once(':')
                .map(|(repo, _)| repo == pattern)
                .unwrap_or(false)
        }
    })
}

pub async fn list(State(engine): State<AppState>, uri: Uri) -> ApiResult {
    let q = Query::from_uri(&uri);
    let mut references: Vec<String> = Vec::new();
    if let Some(raw) = q.get("filters") {
        let v: Value = serde_json::from_str(raw)
            .map_err(|e| Error::InvalidArgument(format!("invalid filters: {e}")))?;
        for (key, vals) in v.as_object().into_iter().flatten() {
            let vals: Vec<String> = match vals {
                Value::Object(m) => m.keys().cloned().collect(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            match key.as_str() {
                "reference" => references.extend(vals),
                "dangling" => {}
                other => return Err(Error::NotSupported(format!("the image filter \"{other}\""))),
            }
        }
    }
    let images = {
        let store = engine.images.clone();
        tokio::task::spawn_blocking(move || store.list())
            .await
            .map_err(|e| Error::internal("image list", e))??
    };
    let out: Vec<Value> = images
        .iter()
        .filter(|img| references.is_empty() || references.iter().any(|r| matches_reference(img, r)))
        .map(|img| {
            json!({
                "Id": img.id,
                "ParentId": "",
                "RepoTags": img.repo_tags,
                "RepoDigests": img.repo_digests,
                "Created": created_unix(img),
                "Size": img.size,
                "VirtualSize": img.size,
                "SharedSize": -1,
                "Labels": img.config.config.labels,
                "Containers": -1,
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(out)))
}

fn inspect_json(img: &Image) -> Value {
    let raw: Value = serde_json::from_slice(&img.raw_config).unwrap_or(Value::Null);
    let mut config = raw.get("config").cloned().unwrap_or(json!({}));
    if let Value::Object(m) = &mut config {
        m.entry("Labels").or_insert(json!({}));
    }
    json!({
        "Id": img.id,
        "RepoTags": img.repo_tags,
        "RepoDigests": img.repo_digests,
        "Parent": "",
        "Comment": raw.get("comment").cloned().unwrap_or(json!("")),
        "Created": img.created.clone().unwrap_or_default(),
        "DockerVersion": raw.get("docker_version").cloned().unwrap_or(json!("")),
        "Author": img.config.author.clone().unwrap_or_default(),
        "Config": config,
        "Architecture": img.config.architecture,
        "Os": img.config.os,
        "Size": img.size,
        "VirtualSize": img.size,
        "GraphDriver": {"Name": "overlay", "Data": null},
        "RootFS": {"Type": "layers", "Layers": img.config.rootfs_diff_ids},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    })
}

/// GET /images/{name}/json and /images/{name}/history; names may hold slashes.
pub async fn get_dispatch(State(engine): State<AppState>, Path(rest): Path<String>) -> ApiResult {
    if let Some(name) = rest.strip_suffix("/json") {
        let store = engine.images.clone();
        let name = name.to_string();
        let img = tokio::task::spawn_blocking(move || store.get(&name))
            .await
            .map_err(|e| Error::internal("image inspect", e))?
            .map_err(not_found_as_docker)?;
        return Ok(json_response(StatusCode::OK, &inspect_json(&img)));
    }
    if let Some(name) = rest.strip_suffix("/history") {
        let img = engine.images.get(name).map_err(not_found_as_docker)?;
        let hist: Vec<Value> = img
            .config
            .history
            .iter()
            .rev()
            .map(|h| {
                json!({
                    "Id": "<missing>",
                    "Created": h.created.as_deref().and_then(crate::fsutil::parse_time).map(|t| t.timestamp()).unwrap_or(0),
                    "CreatedBy": h.created_by.clone().unwrap_or_default(),
                    "Tags": null,
                    "Size": 0,
                    "Comment": h.comment.clone().unwrap_or_default(),
                })
            })
            .collect();
        return Ok(json_response(StatusCode::OK, &Value::Array(hist)));
    }
    Err(Error::NotSupported(format!("GET /images/{rest}")))
}

fn not_found_as_docker(e: image_store::Error) -> Error {
    match e {
        image_store::Error::NotFound(name) => Error::NotFound(format!("No such image: {name}")),
        e => e.into(),
    }
}

/// POST /images/{name}/tag?repo=R&tag=T (and /push, which is not supported).
pub async fn post_dispatch(
    State(engine): State<AppState>,
    Path(rest): Path<String>,
    uri: Uri,
) -> ApiResult {
    let q = Query::from_uri(&uri);
    if let Some(name) = rest.strip_suffix("/tag") {
        let repo = q.get("repo").ok_or_else(|| {
            Error::InvalidArgument("repository name must have at least one component".into())
        })?;
        let target = match q.get("tag") {
            Some(t) => format!("{repo}:{t}"),
            None => repo.to_string(),
        };
        engine
            .images
            .tag(name, &target)
            .map_err(not_found_as_docker)?;
        return Ok(StatusCode::CREATED.into_response());
    }
    if rest.ends_with("/push") {
        return Err(Error::NotSupported("docker push".into()));
    }
    Err(Error::NotSupported(format!("POST /images/{rest}")))
}

pub async fn remove(
    State(engine): State<AppState>,
    Path(name): Path<String>,
    uri: Uri,
) -> ApiResult {
    let q = Query::from_uri(&uri);
    let force = q.flag("force");
    let store = engine.images.clone();
    let eng = engine.clone();
    let n = name.clone();
    let removed = tokio::task::spawn_blocking(move || store.remove(&n, force, &|id| eng.image_in_use(id)))
        .await
        .map_err(|e| Error::internal("image remove", e))?
        .map_err(|e| match e {
            image_store::Error::InUse { .. } => {
                let image_id = engine.images.get(&name).map(|i| i.id).unwrap_or_default();
                let user = engine
                    .list()
                    .into_iter()
                    .map(|c| c.snapshot())
                    .find(|r| r.image_id == image_id);
                Error::Conflict(format!(
                    "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image",
                    user.map(|r| r.id[..12].to_string()).unwrap_or_default()
                ))
            }
            e => not_found_as_docker(e),
        })?;
    let out: Vec<Value> = removed
        .into_iter()
        .map(|r| match r {
            Removed::Untagged(t) => json!({ "Untagged": t }),
            Removed::Deleted(id) => json!({ "Deleted": id }),
        })
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(out)))
}

/// Reads the request body as a blocking reader (for the store's tar readers).
/// POST /images/load: the whole archive is verified and committed before
/// the answer, so that an error is a plain HTTP error with a message.
pub async fn load(State(engine): State<AppState>, uri: Uri, req: Request) -> ApiResult {
    let q = Query::from_uri(&uri);
    let quiet = q.flag("quiet");
    let reader = body_reader(req.into_body());
    let store = engine.images.clone();
    let (lines, loaded) = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        let res = store.load(reader, &mut |msg: &str| lines.push(msg.to_string()));
        (lines, res)
    })
    .await
    .map_err(|e| Error::internal("image load", e))?;
    crate::memory::release();
    let loaded = loaded?;
    if loaded.is_empty() {
        return Err(Error::InvalidArgument(
            "no images found in the archive".into(),
        ));
    }
    let _ = quiet;
    let mut body = String::new();
    let mut said = false;
    for l in lines.iter().filter(|l| l.starts_with("Loaded image")) {
        body.push_str(&json!({ "stream": format!("{l}\n") }).to_string());
        body.push('\n');
        said = true;
    }
    if !said {
        for img in &loaded {
            let line = if img.tags.is_empty() {
                format!("Loaded image ID: {}\n", img.id)
            } else {
                img.tags
                    .iter()
                    .map(|t| format!("Loaded image: {t}\n"))
                    .collect::<String>()
            };
            body.push_str(&json!({ "stream": line }).to_string());
            body.push('\n');
        }
    }
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default())
}

/// The credentials of `X-Registry-Auth` (base64url JSON).
fn registry_auth(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let raw = headers.get("X-Registry-Auth")?.to_str().ok()?;
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(raw.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim()))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(raw.trim()))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let user = v.get("username").and_then(|u| u.as_str()).unwrap_or("");
    let pass = v.get("password").and_then(|u| u.as_str()).unwrap_or("");
    (!user.is_empty()).then(|| (user.to_string(), pass.to_string()))
}

/// POST /images/create: pull (`fromImage`) or import (`fromSrc=-`).
pub async fn create(
    State(engine): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    req: Request,
) -> ApiResult {
    let q = Query::from_uri(&uri);
    if let Some(src) = q.get("fromSrc") {
        if src != "-" {
            return Err(Error::NotSupported(
                "importing from a URL (use - and send the tar)".into(),
            ));
        }
        let reference = match (q.get("repo"), q.get("tag")) {
            (Some(r), Some(t)) => Some(format!("{r}:{t}")),
            (Some(r), None) => Some(r.to_string()),
            _ => None,
        };
        // `changes` may repeat, and one value may hold several lines.
        let all_changes: Vec<String> = q
            .all("changes")
            .flat_map(str::lines)
            .map(str::to_string)
            .collect();
        let config = parse_changes(&all_changes)?;
        let reader = body_reader(req.into_body());
        let store = engine.images.clone();
        let id =
            tokio::task::spawn_blocking(move || store.import(reader, reference.as_deref(), config))
                .await
                .map_err(|e| Error::internal("image import", e));
        crate::memory::release();
        let id = id??;
        let body = format!("{}\n", json!({ "status": id }));
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap_or_default());
    }
    let Some(image) = q.get("fromImage") else {
        return Err(Error::InvalidArgument(
            "fromImage or fromSrc is required".into(),
        ));
    };
    let reference = match q.get("tag") {
        Some(t) if t.starts_with("sha256:") => format!("{image}@{t}"),
        Some(t) => format!("{image}:{t}"),
        None => image.to_string(),
    };
    if let Some(p) = q.get("platform") {
        if p != "linux/amd64" && p != "linux" {
            return Err(Error::NotSupported(format!("platform {p}")));
        }
    }
    // Reject a bad reference before the stream starts.
    image_store::ImageStore::normalize_reference(&reference)?;
    let opts = PullOptions {
        insecure_registries: engine.config.insecure_registries.clone(),
        auth: registry_auth(&headers),
    };
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let store = engine.images.clone();
    tokio::spawn(async move {
        let send = |v: Value| {
            let _ = tx.send(Bytes::from(format!("{v}\n")));
        };
        let mut progress = {
            let tx = tx.clone();
            move |p: PullProgress| {
                let v = match p {
                    PullProgress::Status(s) => json!({ "status": s }),
                    PullProgress::Layer {
                        id,
                        status,
                        current,
                        total,
                    } => json!({
                        "status": status,
                        "id": id,
                        "progressDetail": match total { Some(t) => json!({"current": current, "total": t}), None => json!({}) },
                    }),
                };
                let _ = tx.send(Bytes::from(format!("{v}\n")));
            }
        };
        let result = store.pull(&reference, &opts, &mut progress).await;
        crate::memory::release();
        match result {
            Ok(_) => {}
            Err(e) => {
                let msg = e.to_string();
                send(json!({ "errorDetail": { "message": msg }, "error": msg }));
            }
        }
    });
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
    use futures_util::StreamExt;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(
            stream.map(Ok::<_, std::convert::Infallible>),
        ))
        .unwrap_or_default())
}

/// `docker import -c`: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL.
fn parse_changes(changes: &[String]) -> Result<ContainerConfig, Error> {
    let mut cfg = ContainerConfig::default();
    let list = |v: &str| -> Vec<String> {
        let v = v.trim();
        if v.starts_with('[') {
            serde_json::from_str(v).unwrap_or_else(|_| vec![v.to_string()])
        } else {
            vec!["/bin/sh".into(), "-c".into(), v.to_string()]
        }
    };
    for change in changes.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
        let (word, value) = change
            .split_once(char::is_whitespace)
            .unwrap_or((change, ""));
        match word.to_ascii_uppercase().as_str() {
            "CMD" => cfg.cmd = Some(list(value)),
            "ENTRYPOINT" => cfg.entrypoint = Some(list(value)),
            "ENV" => {
                let value = value.trim();
                if value.contains('=') {
                    cfg.env.push(value.to_string());
                } else if let Some((k, v)) = value.split_once(char::is_whitespace) {
                    cfg.env.push(format!("{k}={}", v.trim()));
                }
            }
            "WORKDIR" => cfg.working_dir = Some(value.trim().to_string()),
            "USER" => cfg.user = Some(value.trim().to_string()),
            "LABEL" => {
                if let Some((k, v)) = value.trim().split_once('=') {
                    cfg.labels
                        .insert(k.to_string(), v.trim_matches('"').to_string());
                }
            }
            other => {
                return Err(Error::NotSupported(format!(
                "the import change \"{other}\" (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL are)"
            )))
            }
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_changes_parse_exec_and_shell_forms() {
        let cfg = parse_changes(&[
            "CMD [\"/bin/sh\", \"-c\", \"echo hi\"]".into(),
            "ENV A=1".into(),
            "ENV B 2".into(),
            "WORKDIR /tmp".into(),
            "ENTRYPOINT echo".into(),
        ])
        .unwrap();
        assert_eq!(cfg.cmd.unwrap(), vec!["/bin/sh", "-c", "echo hi"]);
        assert_eq!(cfg.env, vec!["A=1", "B=2"]);
        assert_eq!(cfg.working_dir.as_deref(), Some("/tmp"));
        assert_eq!(cfg.entrypoint.unwrap(), vec!["/bin/sh", "-c", "echo"]);
        assert!(parse_changes(&["EXPOSE 80".into()]).is_err());
    }
}
