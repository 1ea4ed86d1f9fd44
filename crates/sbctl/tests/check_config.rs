//! `sbctl check-config` and `sbctl render-config` as a user runs them: exit codes and the exact
//! lines printed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test should fail loudly on an unexpected error"
)]

use std::path::Path;
use std::process::{Command, Output};

const SBCTL: &str = env!("CARGO_BIN_EXE_sbctl");
const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../envoy/switchboard.yaml");
const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// base64 of 32 bytes.
const SECRET: &str = "c3dpdGNoYm9hcmQtY2hlY2stY29uZmlnLXRlc3QtMzI=";
const RS257: &str = r#"identity.keys[1].alg: "RS257" is not one of HS256, RS256, ES256, EdDSA"#;

fn sbctl(args: &[&str], dir: &Path) -> Output {
    Command::new(SBCTL)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn good_json() -> String {
    format!(
        r#"{{"identity": {{"keys": [{{"kid": "hs-1", "alg": "HS256", "secret": "{SECRET}"}}]}}}}"#
    )
}

fn bad_json() -> String {
    format!(
        r#"{{"identity": {{"keys": [{{"kid": "hs-1", "alg": "HS256", "secret": "{SECRET}"}}, {{"kid": "x", "alg": "RS257", "pem": "x"}}]}}}}"#
    )
}

/// One listener, one Wasm filter per `(name, JSON)`, the JSON as a quoted YAML string.
fn envoy_yaml(filters: &[(&str, String)]) -> String {
    let mut yaml = String::from(
        "static_resources:\n  listeners:\n    - name: gateway\n      filter_chains:\n        - filters:\n            - name: envoy.filters.network.http_connection_manager\n              typed_config:\n                http_filters:\n",
    );
    for (name, json) in filters {
        let quoted = serde_json::to_string(json).unwrap();
        yaml.push_str(&format!(
            "                  - name: envoy.filters.http.wasm\n                    typed_config:\n                      \"@type\": {WASM_TYPE}\n                      config:\n                        name: {name}\n                        configuration:\n                          \"@type\": type.googleapis.com/google.protobuf.StringValue\n                          value: {quoted}\n"
        ));
    }
    yaml
}

const TAGS_WARNING: &str = "warning: stats_config.stats_tags has no platform, region, tenant, result tag: Prometheus sees Switchboard's labels as part of metric names (copy the stats_tags of envoy/switchboard.yaml)";
const IDLE_WARNING: &str = "warning: stream_idle_timeout (300s) is not above idle_timeout (900s): Envoy resets silent sessions before the filter closes them with 1001";
const OK_GENERIC: &str = "ok: profile=generic early_data=reject_upgrades origin=any keys=1 token_sources=authorization,subprotocol,query routing_header=x-agent-routing-key cache_slots=16384 platform_token=off";

#[test]
fn valid_json_prints_ok_and_exits_0() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("filter.json"), good_json()).unwrap();
    let output = sbctl(&["check-config", "filter.json"], work.path());
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout_lines(&output), vec![OK_GENERIC]);
    assert!(output.stderr.is_empty());
}

#[test]
fn print_adds_the_effective_configuration() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("filter.json"), good_json()).unwrap();
    let output = sbctl(&["check-config", "filter.json", "--print"], work.path());
    assert_eq!(output.status.code(), Some(0));
    let lines = stdout_lines(&output);
    assert_eq!(lines[0], OK_GENERIC);
    assert!(lines.len() > 5, "{lines:#?}");
    assert!(lines[1..].iter().all(|line| line.starts_with("  ")));
    assert!(lines.contains(&"  platform.agent_header: x-agent-id".to_owned()));
    assert!(lines.contains(&"  identity.query_param: access_token".to_owned()));
    assert!(!lines.iter().any(|line| line.contains(SECRET)));
}

#[test]
fn every_error_is_printed_and_exits_1() {
    let work = tempfile::tempdir().unwrap();
    let json = format!(
        r#"{{"profile": "avaya", "routing": {{"header": "X-Key"}}, "identity": {{"keys": [{{"kid": "hs-1", "alg": "HS256", "secret": "{SECRET}"}}]}}}}"#
    );
    std::fs::write(work.path().join("filter.json"), json).unwrap();
    let output = sbctl(&["check-config", "filter.json"], work.path());
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout_lines(&output),
        vec![
            r#"profile: "avaya" is not one of generic, genesys, nice"#,
            r#"routing.header: "X-Key" must be lowercase"#,
        ]
    );
}

#[test]
fn yaml_filters_are_named_in_errors() {
    let work = tempfile::tempdir().unwrap();
    let yaml = envoy_yaml(&[("switchboard", bad_json()), ("second", good_json())]);
    std::fs::write(work.path().join("envoy.yaml"), yaml).unwrap();
    let output = sbctl(&["check-config", "envoy.yaml"], work.path());
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout_lines(&output),
        vec![
            format!("switchboard: {RS257}"),
            OK_GENERIC.to_owned(),
            IDLE_WARNING.to_owned(),
            TAGS_WARNING.to_owned()
        ]
    );

    let yaml = envoy_yaml(&[("switchboard", good_json()), ("second", good_json())]);
    std::fs::write(work.path().join("envoy.yaml"), yaml).unwrap();
    let output = sbctl(&["check-config", "envoy.yaml"], work.path());
    assert_eq!(output.status.code(), Some(0));
    // Without stream_idle_timeout Envoy cuts silent streams at 300 s, before the filter's
    // 900 s idle close: each filter gets the warning.
    assert_eq!(
        stdout_lines(&output),
        vec![
            OK_GENERIC,
            IDLE_WARNING,
            TAGS_WARNING,
            OK_GENERIC,
            IDLE_WARNING,
            TAGS_WARNING
        ]
    );
}

#[test]
fn yaml_without_a_switchboard_filter_exits_1() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("envoy.yaml"),
        "admin:\n  address:\n    socket_address: { address: 127.0.0.1, port_value: 9901 }\n",
    )
    .unwrap();
    let output = sbctl(&["check-config", "envoy.yaml"], work.path());
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout_lines(&output),
        vec![format!(
            "no Switchboard filter: nothing has \"@type\": {WASM_TYPE}"
        )]
    );
}

#[test]
fn unreadable_file_exits_2() {
    let work = tempfile::tempdir().unwrap();
    let output = sbctl(&["check-config", "missing.yaml"], work.path());
    assert_eq!(output.status.code(), Some(2));
    let lines = stdout_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("cannot read missing.yaml: "),
        "{lines:#?}"
    );
}

#[test]
fn shipped_template_passes_only_after_rendering() {
    let work = tempfile::tempdir().unwrap();
    let output = sbctl(&["check-config", TEMPLATE], work.path());
    assert_eq!(output.status.code(), Some(1));
    let lines = stdout_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("switchboard: identity.keys[0]"),
        "{lines:#?}"
    );

    let output = sbctl(
        &[
            "render-config",
            "--template",
            TEMPLATE,
            "--dir",
            ".dev",
            "--out",
            "out/switchboard.yaml",
            "--wasm",
            "build/switchboard.wasm",
            "--listen-port",
            "18000",
            "--admin-port",
            "18001",
            "--platform-port",
            "18002",
        ],
        work.path(),
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout_lines(&output), vec!["wrote out/switchboard.yaml"]);
    // Keys were made because none existed; RSA is not needed.
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("wrote .dev/agent-ed25519.pem"), "{stderr}");
    assert!(!work.path().join(".dev/agent-rs256.pem").exists());

    let rendered = std::fs::read_to_string(work.path().join("out/switchboard.yaml")).unwrap();
    let wasm = work.path().join("build/switchboard.wasm");
    assert!(rendered.contains(&format!("filename: {}\n", wasm.display())));
    for port in ["18000", "18001", "18002"] {
        assert!(
            rendered.contains(&format!("port_value: {port} }}")),
            "{port}"
        );
    }
    assert!(!rendered.contains("SWITCHBOARD_DEV_ED25519_PUBLIC_KEY"));

    let output = sbctl(&["check-config", "out/switchboard.yaml"], work.path());
    assert_eq!(output.status.code(), Some(0));
    let lines = stdout_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0]
            .starts_with("ok: profile=genesys early_data=reject_upgrades origin=2 allowed keys=1 "),
        "{lines:#?}"
    );

    // Rendering again keeps the keys, so the output is identical.
    let again = sbctl(
        &[
            "render-config",
            "--template",
            TEMPLATE,
            "--dir",
            ".dev",
            "--out",
            "again.yaml",
            "--wasm",
            "build/switchboard.wasm",
            "--listen-port",
            "18000",
            "--admin-port",
            "18001",
            "--platform-port",
            "18002",
        ],
        work.path(),
    );
    assert!(again.status.success());
    assert!(again.stderr.is_empty(), "nothing generated the second time");
    assert_eq!(
        std::fs::read_to_string(work.path().join("again.yaml")).unwrap(),
        rendered
    );
}

#[test]
fn render_config_refuses_a_flag_with_nothing_to_replace() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("t.yaml"), "admin: {}\n").unwrap();
    let output = sbctl(
        &[
            "render-config",
            "--template",
            "t.yaml",
            "--dir",
            ".dev",
            "--out",
            "o.yaml",
            "--admin-port",
            "1234",
        ],
        work.path(),
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(!work.path().join("o.yaml").exists());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("the template has no `port_value: 9901` for --admin-port to replace"),
        "{stderr}"
    );
}
