//! A document that uses every key of COMPAT.md: the schema knows them all and
//! the typed model reads them all.

use std::path::Path;

use config::model::CloudConfig;
use config::validate::{validate, Severity};
use config::Config;

#[test]
fn every_documented_key_is_known_and_readable() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/every-key.yml");
    let config = Config::load(&path).unwrap();
    let errors: Vec<String> = validate(&config)
        .into_iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    let model: CloudConfig = config.typed().unwrap();
    assert_eq!(model.mounts.len(), 3);
    assert_eq!(model.rancher.docker.tls, Some(true), "yes is a boolean");
    assert_eq!(model.rancher.network.interfaces.len(), 5);
    assert_eq!(model.rancher.cloud_init.datasources.len(), 5);
    assert_eq!(model.rancher.registry_auths.len(), 2);
    assert_eq!(model.rancher.state.autoformat, ["/dev/sda", "/dev/vda"]);
    assert_eq!(model.rancher.disable, ["acpid"]);
    assert_eq!(
        model.rancher.repositories["core"].url.as_deref(),
        Some("https://services.example/v1")
    );
}
