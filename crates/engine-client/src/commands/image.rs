//! Image commands: images, load, import, pull, tag, rmi.

use std::collections::HashMap;
use std::io::IsTerminal;

use bollard::query_parameters::{
    ImportImageOptions, ListImagesOptions, RemoveImageOptions, TagImageOptions,
};
use futures_util::StreamExt;
use hyper::Method;

use crate::cli::{ImagesArgs, ImportArgs, LoadArgs, PullArgs, RmiArgs, TagArgs};
use crate::client::{encode, Engine, RawBody};
use crate::commands::{err_out, out, reader_stream};
use crate::error::{Error, Result};
use crate::format::images_table;
use crate::parse::{parse_change, split_reference};
use crate::progress::{Progress, Target};

/// `images`.
pub async fn images(engine: &Engine, args: ImagesArgs) -> Result<i32> {
    let filters = args
        .reference
        .as_ref()
        .map(|r| HashMap::from([("reference".to_string(), vec![r.clone()])]));
    let list = engine
        .docker()
        .list_images(Some(ListImagesOptions {
            all: args.all,
            filters,
            ..Default::default()
        }))
        .await
        .map_err(|e| engine.err(e))?;
    // Also filtered here, for engines that ignore the `reference` filter.
    let list = match &args.reference {
        Some(r) => filter_reference(list, r),
        None => list,
    };
    if let Some(template) = &args.format {
        crate::format::check_list_template(template)?;
    }
    let rows = crate::format::image_rows(&list, args.no_trunc, chrono::Utc::now().timestamp());
    let text = if args.quiet {
        // One id a row of the table, as docker prints them (an image with
        // two tags appears twice).
        rows.iter().map(|row| format!("{}\n", row[2])).collect()
    } else if let Some(template) = &args.format {
        let mut text = String::new();
        for row in &rows {
            let created = list
                .iter()
                .find(|i| crate::format::short_id(&i.id, args.no_trunc) == row[2])
                .map_or(0, |i| i.created);
            let fields = serde_json::Value::Object(crate::format::image_fields(row, created));
            text.push_str(&crate::format::apply_template(template, &fields)?);
            text.push('\n');
        }
        text
    } else {
        images_table(&list, args.no_trunc, chrono::Utc::now().timestamp())
    };
    out(text.as_bytes())?;
    Ok(0)
}

/// Keeps the images with a tag matching `REPOSITORY[:TAG]` (exact names), and
/// of each only the matching tags.
pub fn filter_reference(
    images: Vec<bollard::models::ImageSummary>,
    reference: &str,
) -> Vec<bollard::models::ImageSummary> {
    let explicit_tag = {
        let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
        reference[last_slash..].contains(':')
    };
    let (want_repo, want_tag) = split_reference(reference);
    images
        .into_iter()
        .filter_map(|mut image| {
            image.repo_tags.retain(|t| {
                let (repo, tag) = split_reference(t);
                repo == want_repo && (!explicit_tag || tag == want_tag)
            });
            (!image.repo_tags.is_empty()).then_some(image)
        })
        .collect()
}

/// Opens FILE, or stdin for `-`/`None` (refusing a terminal, as docker does).
fn open_input(path: Option<&str>) -> Result<Box<dyn std::io::Read + Send>> {
    match path {
        None | Some("-") => {
            if std::io::stdin().is_terminal() {
                return Err(Error::Usage(
                    "requested load from stdin, but stdin is empty (give -i FILE or pipe a tar archive)"
                        .to_string(),
                ));
            }
            Ok(Box::new(std::io::stdin()))
        }
        Some(p) => std::fs::File::open(p)
            .map(|f| Box::new(f) as Box<dyn std::io::Read + Send>)
            .map_err(|source| Error::Read {
                path: p.to_string(),
                source,
            }),
    }
}

/// `load`.
pub async fn load(engine: &Engine, args: LoadArgs) -> Result<i32> {
    let input = open_input(args.input.as_deref())?;
    let body = bollard::body_try_stream(reader_stream(input));
    let docker = engine.streaming();
    let mut stream = docker.import_image(
        ImportImageOptions {
            quiet: args.quiet,
            ..Default::default()
        },
        body,
        None,
    );
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| engine.err(e))?;
        if let Some(text) = info.stream {
            out(text.as_bytes())?;
        } else if let (Some(status), false) = (info.status, args.quiet) {
            let line = match info.id {
                Some(id) => format!("{id}: {status}\n"),
                None => format!("{status}\n"),
            };
            out(line.as_bytes())?;
        }
    }
    Ok(0)
}

/// `import`.
pub async fn import(engine: &Engine, args: ImportArgs) -> Result<i32> {
    for change in &args.changes {
        parse_change(change)?;
    }
    let mut query = Vec::new();
    let body = if args.source.starts_with("http://") || args.source.starts_with("https://") {
        query.push(format!("fromSrc={}", encode(&args.source, false)));
        RawBody::Empty
    } else {
        query.push("fromSrc=-".to_string());
        RawBody::Stream(reader_stream(open_input(Some(&args.source))?))
    };
    if let Some(reference) = &args.reference {
        // docker sends the whole reference as `repo` (tag included).
        query.push(format!("repo={}", encode(reference, false)));
    }
    if let Some(message) = &args.message {
        query.push(format!("message={}", encode(message, false)));
    }
    for change in &args.changes {
        query.push(format!("changes={}", encode(change.trim(), false)));
    }
    let path = format!("/images/create?{}", query.join("&"));
    let (_, answer) = engine.raw(Method::POST, &path, body).await?;
    // The answer is a stream of JSON messages; the last status is the image id.
    for line in answer.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let message: serde_json::Value = serde_json::from_slice(line)
            .map_err(|e| Error::Engine(format!("bad answer to import: {e}")))?;
        if let Some(err) = message.get("error").and_then(|e| e.as_str()) {
            return Err(Error::Stream(err.to_string()));
        }
        if let Some(status) = message.get("status").and_then(|s| s.as_str()) {
            out(format!("{status}\n").as_bytes())?;
        }
    }
    Ok(0)
}

/// `pull`.
pub async fn pull(engine: &Engine, args: PullArgs) -> Result<i32> {
    let target = if args.quiet {
        Target::Quiet
    } else {
        Target::Stdout
    };
    pull_image(engine, &args.name, target).await?;
    if args.quiet {
        out(format!("{}\n", args.name).as_bytes())?;
    }
    Ok(0)
}

/// Pulls `name` showing progress on `target`; shared with `run`.
pub async fn pull_image(engine: &Engine, name: &str, target: Target) -> Result<()> {
    let (repo, tag) = split_reference(name);
    if !name.contains('@') && tag.as_deref() == Some("latest") && !name.ends_with(":latest") {
        target.line("Using default tag: latest")?;
    }
    let options = bollard::query_parameters::CreateImageOptions {
        from_image: Some(repo),
        tag,
        ..Default::default()
    };
    let docker = engine.streaming();
    let mut stream = docker.create_image(Some(options), None, None);
    let mut progress = Progress::new(target);
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => progress.update(
                info.id.as_deref(),
                info.status.as_deref().unwrap_or_default(),
                info.progress_detail
                    .as_ref()
                    .and_then(|p| p.current.zip(p.total)),
            )?,
            Err(e) => {
                progress.finish();
                return Err(engine.err(e));
            }
        }
    }
    progress.finish();
    Ok(())
}

/// `tag`.
pub async fn tag(engine: &Engine, args: TagArgs) -> Result<i32> {
    let (repo, tag) = split_reference(&args.target);
    if tag.is_none() {
        return Err(Error::Usage(format!(
            "invalid target '{}': a tag cannot be a digest",
            args.target
        )));
    }
    engine
        .docker()
        .tag_image(
            &args.source,
            Some(TagImageOptions {
                repo: Some(repo),
                tag,
            }),
        )
        .await
        .map_err(|e| engine.err(e))?;
    Ok(0)
}

/// `rmi`.
pub async fn rmi(engine: &Engine, args: RmiArgs) -> Result<i32> {
    let mut code = 0;
    for image in &args.images {
        let result = engine
            .docker()
            .remove_image(
                image,
                Some(RemoveImageOptions {
                    force: args.force,
                    ..Default::default()
                }),
                None,
            )
            .await;
        match result {
            Ok(items) => {
                let mut text = String::new();
                for item in items {
                    if let Some(u) = item.untagged {
                        text.push_str(&format!("Untagged: {u}\n"));
                    }
                    if let Some(d) = item.deleted {
                        text.push_str(&format!("Deleted: {d}\n"));
                    }
                }
                out(text.as_bytes())?;
            }
            Err(e) => {
                let e = engine.err(e);
                if matches!(e, Error::CannotConnect { .. }) {
                    return Err(e);
                }
                err_out(format!("{e}\n").as_bytes())?;
                code = 1;
            }
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ImageSummary;

    #[test]
    fn reference_filter_keeps_matching_tags() {
        let images = vec![
            ImageSummary {
                id: "sha256:1".into(),
                repo_tags: vec![
                    "busybox:latest".into(),
                    "busybox:1".into(),
                    "other:1".into(),
                ],
                ..Default::default()
            },
            ImageSummary {
                id: "sha256:2".into(),
                repo_tags: vec!["127.0.0.1:5000/busybox:latest".into()],
                ..Default::default()
            },
        ];
        let tags = |list: Vec<ImageSummary>| -> Vec<String> {
            list.into_iter().flat_map(|i| i.repo_tags).collect()
        };
        assert_eq!(
            tags(filter_reference(images.clone(), "busybox")),
            vec!["busybox:latest", "busybox:1"]
        );
        assert_eq!(
            tags(filter_reference(images.clone(), "busybox:1")),
            vec!["busybox:1"]
        );
        assert_eq!(
            tags(filter_reference(images.clone(), "127.0.0.1:5000/busybox")),
            vec!["127.0.0.1:5000/busybox:latest"]
        );
        assert!(filter_reference(images, "nosuch").is_empty());
    }
}
