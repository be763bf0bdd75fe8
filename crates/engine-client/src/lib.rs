//! # engine-client: `system-docker`
