//! Every key family of the compatibility contract (COMPAT.md) is accepted:
//! a document using each key validates without errors and reads into the
//! typed model; a misspelt key in each family is an error naming it.

use std::path::Path;

use config::model::CloudConfig;
use config::validate::{validate_text, Severity};
use config::Config;

/// One document with every key of COMPAT.md, as RancherOS and BurmillaOS
/// users write them.
const EVERY_KEY: &str = r#"#cloud-config
hostname: box
ssh_authorized_keys: [ssh-ed25519 AAAA user@host]
write_files:
  - {path: /etc/motd, content: hi, permissions: "0644", owner: root}
  - {path: /etc/ntp.conf, content: server x, container: ntp}
runcmd: [echo one, [touch, /tmp/two]]
bootcmd: [echo early]
mounts:
  - [/dev/vdb, /mnt/b, ext4, ""]
  - [/swapfile, none, swap, sw]
  - ["10.0.0.1:/export", /mnt/nfs, nfs4, ""]
rancher:
  services:
    web: {image: nginx, restart: always}
  services_include: {open-vm-tools: true, "https://example.test/x.yml": false}
  bootstrap: {}
  cloud_init_services: {}
  console: debian
  docker:
    engine: docker-26.1
    tls: true
    tls_args: [--tlsverify]
    extra_args: [--debug]
    storage_context: console
    environment: [HTTP_PROXY]
    bridge: docker0
    bip: 172.19.0.1/16
    debug: true
    host: [unix:///var/run/docker.sock]
    insecure_registry: [r:5000]
    log_driver: json-file
    log_opts: {max-size: 10m}
    registry_mirror: http://mirror:5000
    storage_driver: overlay2
    live_restore: true
    data_root: /var/lib/docker
    graph: /var/lib/docker
  system_docker: {storage_driver: overlay2, debug: false}
  bootstrap_docker: {debug: false}
  network:
    dns: {nameservers: [8.8.8.8], search: [example.test]}
    http_proxy: http://proxy:3128
    https_proxy: http://proxy:3128
    no_proxy: localhost
    pre_cmds: [echo pre]
    post_cmds: [echo post]
    dhcp_timeout: 10
    interfaces:
      eth*: {dhcp: true, dhcp_args: -4}
      "mac=52:54:00:12:34:56":
        match: eth1
        address: 10.0.0.2/24
        addresses: [10.0.0.3/24]
        gateway: 10.0.0.1
        gateway_ipv6: fe80::1
        mtu: 1500
        pre_up: [echo up]
        post_up: [echo upped]
      br0: {bridge: true}
      bond0: {bond: bond0, bond_opts: {mode: active-backup}}
      eth2: {vlans: "100,200"}
  state:
    dev: LABEL=RANCHER_STATE
    fstype: auto
    directory: /state
    wait: true
    required: false
    autoformat: [/dev/sda]
    mdadm_scan: false
    lvm_scan: false
    cryptsetup: false
    script: /opt/state.sh
    oem_dev: LABEL=RANCHER_OEM
    boot_dev: LABEL=RANCHER_BOOT
  cloud_init:
    datasources: [configdrive:/media/config-2, cmdline, "url:http://x/y", "file:/z", ec2, gce, digitalocean, "*"]
  environment: {ETCD: x, "B*": ""}
  sysctl: {net.ipv4.ip_forward: 1}
  modules: [bonding, 8021q]
  ssh: {keys: {ssh_host_rsa_key: x}, port: 2222, listen_address: 0.0.0.0, daemon: true}
  upgrade: {url: https://example.test/releases.yml, image: oxos/os, rollback: v1, policy: auto}
  registry_auths: {"r:5000": {auth: dXNlcjpwYXNz}}
  repositories: {extra: {url: https://example.test/services}}
  hypervisor_service: true
  resize_device: /dev/sda
  restart_services: [syslog]
  shutdown_timeout: 60
  debug: false
  log: true
  disable: [acpid]
"#;

fn errors(text: &str) -> Vec<String> {
    validate_text(text, Path::new("user-data.yml"))
        .into_iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.to_string())
        .collect()
}

#[test]
fn a_document_with_every_key_family_validates_and_reads() {
    assert_eq!(errors(EVERY_KEY), Vec::<String>::new());
    let config = Config::parse(EVERY_KEY, Path::new("user-data.yml")).unwrap();
    let model: CloudConfig = config.typed().unwrap();
    assert_eq!(model.hostname.as_deref(), Some("box"));
    assert_eq!(model.write_files[1].container.as_deref(), Some("ntp"));
    assert_eq!(model.mounts.len(), 3);
    assert_eq!(model.rancher.ssh.port, Some(2222));
    assert_eq!(model.rancher.state.autoformat, ["/dev/sda"]);
}

#[test]
fn a_misspelt_key_in_each_family_is_an_error_that_names_it() {
    let cases = [
        ("hostnme: box", "hostnme"),
        ("write_files: [{path: /x, contnet: y}]", "contnet"),
        (
            "rancher: {docker: {extra_arg: [x]}}",
            "rancher.docker.extra_arg",
        ),
        ("rancher: {network: {dns: {nameserver: [x]}}}", "nameserver"),
        (
            "rancher: {network: {interfaces: {eth0: {adress: x}}}}",
            "adress",
        ),
        ("rancher: {state: {autoformt: [x]}}", "autoformt"),
        ("rancher: {cloud_init: {datasource: [x]}}", "datasource"),
        ("rancher: {ssh: {prot: 22}}", "prot"),
        ("rancher: {upgrade: {urll: x}}", "urll"),
        ("rancher: {sysctll: {}}", "sysctll"),
    ];
    for (text, key) in cases {
        let found = errors(text);
        assert!(
            found.iter().any(|e| e.contains(key)),
            "{text}: expected an error naming {key}, got {found:?}"
        );
    }
}
