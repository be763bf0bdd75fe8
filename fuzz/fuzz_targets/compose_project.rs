//! A compose document as the service loader reads it: parse the project
//! (`rancher.services`, a v2 file or a v1 file), compute the dependency graph
//! and the start order, and write every service back as YAML.
//!
//! Besides "no panic", the target checks two promises: a start order holds
//! every service once, after its dependencies; and a service written back
//! reads back the same.

#![no_main]

use std::collections::BTreeMap;

use compose::{Project, Service};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(project) = Project::from_yaml(text) else {
        return;
    };
    for (name, service) in project.services() {
        let _ = (service.after(), service.before(), service.is_system());
        let _ = (service.detach(), service.create_only(), service.rebuild());
        let value = match serde_norway::to_value(service) {
            Ok(v) => v,
            Err(e) => panic!("service {name} cannot be written back: {e}"),
        };
        let back: Service = match serde_norway::from_value(value.clone()) {
            Ok(s) => s,
            Err(e) => panic!("service {name} written back does not read back: {e}\n{value:?}"),
        };
        // A key that holds `=` (`labels: {a=b: c}`,
        // regressions/compose_project/label-key-with-equals.yml) is written in
        // the map form, so it too must come back unchanged.
        assert_eq!(&back, service, "service {name} changed on a round trip");
    }
    let Ok(deps) = project.dependencies() else {
        return;
    };
    if let Ok(order) = project.start_order() {
        assert_eq!(order.len(), project.len(), "start order misses services");
        let position: BTreeMap<&str, usize> = order
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        assert_eq!(position.len(), order.len(), "a service starts twice");
        for (name, ds) in &deps {
            for d in ds {
                assert!(
                    position[d] < position[name],
                    "{name} starts before its dependency {d}"
                );
            }
        }
    }
});
