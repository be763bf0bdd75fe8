//! OxOS datasources: user-data and metadata sources (cmdline, file, url,
//! configdrive, nocloud, ec2, gce, digitalocean). Not built yet.
