//! Files put into a service's container before each start: the
//! `write_files` entries of the config whose `container:` names the service
//! (decoded by cloudinit's [`cloudinit::write_files::for_containers`]),
//! sent as one tar through the engine's `PUT /containers/{id}/archive`
//! into `/`. RancherOS wrote them from each container's entrypoint; here
//! the engine writes them from outside, so any image works.

use std::time::{SystemTime, UNIX_EPOCH};

use engine_client::client::Engine;

use crate::ComposeError;

pub use cloudinit::write_files::{ContainerFile, ServiceFiles};

/// The files of `service` in `files` (none when it has no entry).
pub fn of<'a>(files: &'a ServiceFiles, service: &str) -> &'a [ContainerFile] {
    files.get(service).map(Vec::as_slice).unwrap_or_default()
}

/// The tar of `files`: each a regular file at its path relative to `/`,
/// with its mode and numeric owner, modified now; a later file of the same
/// path replaces an earlier one when extracted.
///
/// The tar has no entries for the parent directories: an entry for a
/// directory that exists already would give it the entry's mode and owner
/// (/tmp would lose its 1777, a home directory its owner). The engine
/// makes missing parents itself, with mode 0755 and owned by root, as
/// Docker does.
pub fn archive(files: &[ContainerFile]) -> std::io::Result<Vec<u8>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut tar = tar::Builder::new(Vec::new());
    for file in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(file.mode);
        header.set_uid(file.uid.into());
        header.set_gid(file.gid.into());
        header.set_mtime(now);
        header.set_size(file.content.len() as u64);
        tar.append_data(
            &mut header,
            file.path.trim_start_matches('/'),
            file.content.as_slice(),
        )?;
    }
    tar.into_inner()
}

/// The paths of `files`, for messages: `/etc/a, /etc/b`.
fn paths(files: &[ContainerFile]) -> String {
    files
        .iter()
        .map(|f| f.path.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Puts `files` into the container of `service` (named after it), before
/// it starts. Nothing to do without files. A failure is the service's,
/// naming the files.
pub async fn put(
    engine: &Engine,
    service: &str,
    files: &[ContainerFile],
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), ComposeError> {
    if files.is_empty() {
        return Ok(());
    }
    let what = paths(files);
    let failed = |message: String| ComposeError::Engine {
        service: service.to_string(),
        message: format!("cannot write {what} (write_files) into its container: {message}"),
    };
    progress(&format!("Writing {what} into {service} (write_files)"));
    let tar = archive(files).map_err(|e| failed(e.to_string()))?;
    engine
        .docker()
        .upload_to_container(
            service,
            Some(bollard::query_parameters::UploadToContainerOptions {
                path: "/".into(),
                ..Default::default()
            }),
            bollard::body_full(tar.into()),
        )
        .await
        .map_err(|e| failed(engine.err(e).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn file(path: &str, mode: u32, uid: u32, gid: u32, content: &[u8]) -> ContainerFile {
        ContainerFile {
            path: path.into(),
            mode,
            uid,
            gid,
            content: content.to_vec(),
        }
    }

    #[test]
    fn the_tar_holds_each_file_below_the_root_with_its_mode_and_owner() {
        let long = format!("/opt/{}/file", "d".repeat(120));
        let files = [
            file("/etc/ntp.conf", 0o644, 0, 0, b"server pool\n"),
            file("/usr/local/bin/run", 0o4750, 1000, 50, b"#!/bin/sh\n"),
            file(&long, 0o600, 0, 0, b""),
        ];
        let tar = archive(&files).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(h.entry_type(), tar::EntryType::Regular);
            let meta = (
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap() > 0,
            );
            let path = entry.path().unwrap().display().to_string();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            seen.push((path, meta, content));
        }
        assert_eq!(
            seen,
            [
                (
                    "etc/ntp.conf".to_string(),
                    (0o644, 0, 0, true),
                    b"server pool\n".to_vec()
                ),
                (
                    "usr/local/bin/run".to_string(),
                    (0o4750, 1000, 50, true),
                    b"#!/bin/sh\n".to_vec()
                ),
                (long[1..].to_string(), (0o600, 0, 0, true), Vec::new()),
            ],
            "no directory entries, paths relative to /"
        );
    }

    #[test]
    fn files_are_found_by_service() {
        let mut files = ServiceFiles::new();
        files.insert("ntp".into(), vec![file("/a", 0o644, 0, 0, b"a")]);
        assert_eq!(of(&files, "ntp").len(), 1);
        assert!(of(&files, "console").is_empty());
        assert_eq!(paths(of(&files, "ntp")), "/a");
    }
}
