//! Checks on the service files shipped with sipban: the SysV/LSB init script
//! (`init.d/sipban`), the systemd unit (`systemd/sipban.service`), the
//! sample Asterisk `manager.conf` (least privilege) and README's install
//! lines (the config, which holds the AMI secret, installed 0600).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const INIT_SCRIPT: &str = "init.d/sipban";
const UNIT_FILE: &str = "systemd/sipban.service";

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A fresh, empty directory unique to this process and test.
fn temp_dir_for(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sipban-service-files-{}-{}",
        std::process::id(),
        test
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create temp dir {}: {e}", dir.display()));
    dir
}

fn run(cmd: &mut Command, what: &str) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("{what}: program not found ({e}); it is required by this test")
        }
        Err(e) => panic!("{what}: cannot run: {e}"),
    }
}

fn read_unit() -> String {
    let path = repo_path(UNIT_FILE);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn init_script_parses_with_bash_n() {
    let script = repo_path(INIT_SCRIPT);
    let out = run(Command::new("bash").arg("-n").arg(&script), "bash -n");
    assert!(
        out.status.success(),
        "bash -n {} failed: {}\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn init_script_status_without_pidfile_is_not_running() {
    let dir = temp_dir_for("status");
    let pidfile = dir.join("sipban.pid");
    assert!(!pidfile.exists());

    let script = repo_path(INIT_SCRIPT);
    let out = run(
        Command::new("sh")
            .arg(&script)
            .arg("status")
            .env("PIDFILE", &pidfile)
            // Keep any defaults file installed on the host out of the test.
            .env("SIPBAN_DEFAULTS", "/dev/null"),
        "init script status",
    );
    let _ = fs::remove_dir_all(&dir);

    assert_eq!(
        out.status.code(),
        Some(3),
        "LSB status of a service without pid file must be 3 (not running); \
         got {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let unit = read_unit();
    let bin = env!("CARGO_BIN_EXE_sipban");
    let mut replaced = 0;
    let patched: String = unit
        .lines()
        .map(|line| {
            if line.starts_with("ExecStart=") {
                replaced += 1;
                format!("ExecStart=\"{bin}\" -c /etc/sipban.conf\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert_eq!(replaced, 1, "unit must have exactly one ExecStart= line");

    let dir = temp_dir_for("verify");
    let unit_path = dir.join("sipban.service");
    fs::write(&unit_path, patched)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", unit_path.display()));

    let out = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_path)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "systemd-analyze not found ({e}): install systemd so the unit can be verified \
             (this test never skips)"
        ),
        Err(e) => panic!("cannot run systemd-analyze: {e}"),
    };
    let _ = fs::remove_dir_all(&dir);

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {}\n{stderr}",
        out.status
    );
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("sipban.service") && (l.contains("Unknown") || l.contains("Failed")))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify complained about the unit:\n{}",
        complaints.join("\n")
    );
}

#[test]
fn systemd_unit_has_required_settings() {
    let unit = read_unit();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();

    for wanted in [
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
        "Restart=on-failure",
    ] {
        assert!(lines.contains(&wanted), "unit lacks the line `{wanted}`");
    }

    let after_has_asterisk = lines
        .iter()
        .filter_map(|l| l.strip_prefix("After="))
        .any(|v| v.split_whitespace().any(|u| u == "asterisk.service"));
    assert!(after_has_asterisk, "unit must order After=asterisk.service");
}

/// `key = value` pairs of `[section]` in an Asterisk-style file (`;`
/// comments), in order.
fn section_keys(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name == section;
        } else if inside && let Some((k, v)) = line.split_once('=') {
            keys.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    keys
}

#[test]
fn sample_manager_conf_grants_security_events_and_no_write_class() {
    // The original's sample granted `write = system,command`: whoever holds
    // the secret could restart Asterisk or run any CLI command.
    let path = repo_path("etc/asterisk/manager.conf");
    let text = fs::read_to_string(&path).unwrap();
    let keys = section_keys(&text, "sipban");
    let values = |key: &str| -> Vec<&str> {
        keys.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("read"), ["security"]);
    assert_eq!(values("write"), ["none"]);
    assert_eq!(values("permit"), ["127.0.0.1/255.255.255.255"]);
    // README's copy says the same.
    let readme = fs::read_to_string(repo_path("README.md")).unwrap();
    let (_, setup) = readme
        .split_once("## Asterisk setup")
        .expect("README has an Asterisk setup section");
    let block = setup
        .split("```ini\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("an ini block in Asterisk setup");
    let readme_keys = section_keys(block, "sipban");
    for key in ["read", "write", "permit", "deny"] {
        let get = |keys: &[(String, String)]| {
            keys.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(get(&readme_keys), get(&keys), "{key}");
    }
}

#[test]
fn readme_installs_the_config_readable_by_root_only() {
    // The config holds the AMI secret; `cp` left it 0644.
    let readme = fs::read_to_string(repo_path("README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().map(str::trim).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("install -m 600 etc/sipban.conf /etc/sipban.conf")),
        "README must install the config with mode 600"
    );
    for l in &lines {
        assert!(
            !l.contains("etc/sipban.conf /etc/") || l.starts_with("install -m 600 "),
            "README copies the config without mode 600: {l}"
        );
    }
    // The shipped config says so too.
    let conf = fs::read_to_string(repo_path("etc/sipban.conf")).unwrap();
    assert!(conf.contains("install -m 600 etc/sipban.conf /etc/sipban.conf"));
}
