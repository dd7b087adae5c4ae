//! The README's quick start, run as written: its operator, node, client and day-to-day blocks
//! (each marked `<!-- checked: NAME -->` before its fence) are executed line by line with bash,
//! in order, in a temporary directory on loopback. Only the substitutions in [`substitute`] are
//! made; every command line of every marked block must run and succeed, so an edit that breaks
//! the quick start fails CI.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::*;

const README: &str = include_str!("../../README.md");
const BLOCKS: [&str; 4] = ["operator", "node", "client", "operator-daily"];

/// The fenced block after `<!-- checked: NAME -->`.
fn block(name: &str) -> Vec<String> {
    let marker = format!("<!-- checked: {name} -->");
    let at = README.find(&marker).unwrap_or_else(|| panic!("README has no block marked {marker}"));
    let rest = &README[at + marker.len()..];
    let fence = rest.find("```sh\n").unwrap_or_else(|| panic!("no ```sh fence after {marker}"));
    let body = &rest[fence + "```sh\n".len()..];
    let end = body.find("\n```").unwrap_or_else(|| panic!("unclosed fence after {marker}"));
    body[..end].lines().map(str::to_owned).collect()
}

/// Lines that are commands (not blank, not only a comment).
fn is_command(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The only changes made to the README's text: the data directory, ports and host names of a
/// loopback run, `--allow-private-targets` on `serve` and `node` (the README says to add it on
/// one machine), and values printed by earlier commands.
fn substitute(line: &str, values: &[(&str, String)]) -> String {
    let mut l = line.to_owned();
    for (from, to) in values {
        l = l.replace(from, to);
    }
    l.replace("traffix serve ", "traffix serve --allow-private-targets ")
        .replace("traffix node ", "traffix node --allow-private-targets ")
}

/// Runs one block with bash: `set -e`, each command line preceded by a marker, background
/// jobs' pids recorded. Returns the block's output.
fn run_block(name: &str, dir: &Path, env: &[(&str, String)], values: &[(&str, String)]) -> String {
    let marks = dir.join(format!("{name}.ran"));
    let mut script = String::from("set -e\n");
    let lines = block(name);
    let commands = lines.iter().filter(|l| is_command(l)).count();
    assert!(commands > 0, "block {name} has no commands");
    for (i, line) in lines.iter().enumerate() {
        if !is_command(line) {
            continue;
        }
        script.push_str(&format!("echo {i} >> '{}'\n", marks.display()));
        script.push_str(&substitute(line, values));
        script.push('\n');
        let code = line.split(" #").next().unwrap_or_default().trim_end();
        if code.ends_with('&') {
            script.push_str(&format!("echo $! >> '{}'\n", dir.join("background.pids").display()));
        }
        if code.starts_with("traffix serve") {
            // Test machinery, not README text: wait until the server takes admin commands.
            script.push_str(
                "for i in $(seq 600); do [ -S \"$TRAFFIX_DATA_DIR/admin.sock\" ] && break; sleep 0.1; done\n",
            );
        }
    }
    let out_path = dir.join(format!("{name}.out"));
    let out = std::fs::File::create(&out_path).unwrap();
    let mut cmd = Command::new("timeout");
    cmd.args(["300", "bash", "-c", &script]).current_dir(dir).stdout(out.try_clone().unwrap()).stderr(out);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd.status().unwrap();
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(status.success(), "README block {name} failed ({status}):\n{script}\n--- output ---\n{output}");
    let ran = std::fs::read_to_string(&marks).unwrap_or_default().lines().count();
    assert_eq!(ran, commands, "every command of block {name} ran:\n{output}");
    output
}

/// Kills the background jobs (server, node) the blocks started.
struct Background(std::path::PathBuf);

impl Drop for Background {
    fn drop(&mut self) {
        for pid in std::fs::read_to_string(&self.0).unwrap_or_default().lines() {
            let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
        }
    }
}

#[test]
fn the_quick_start_runs_as_written() {
    assert_eq!(README.matches("<!-- checked: ").count(), BLOCKS.len(), "every marked block is run, in this list");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _bg = Background(dir.join("background.pids"));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("traffix")).unwrap();
    let data = dir.join("data");
    let (web, socks, http, metrics) = (free_port(), free_port(), free_port(), free_port());
    let env: Vec<(&str, String)> = vec![
        ("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())),
        ("HOME", dir.display().to_string()),
        ("TRAFFIX_DATA_DIR", data.display().to_string()),
        ("TRAFFIX_SERVER__WEB_LISTEN", format!("127.0.0.1:{web}")),
        ("TRAFFIX_SERVER__SOCKS_LISTEN", format!("127.0.0.1:{socks}")),
        ("TRAFFIX_SERVER__HTTP_LISTEN", format!("127.0.0.1:{http}")),
        ("TRAFFIX_SERVER__METRICS_LISTEN", format!("127.0.0.1:{metrics}")),
        ("RUST_LOG", "info".into()),
    ];
    let origin = origin().addr;
    let mut values: Vec<(&str, String)> = vec![
        ("/var/lib/traffix", data.display().to_string()),
        ("https://example.com/", format!("http://{origin}/")),
        ("proxy.example.com:8443", format!("127.0.0.1:{web}")),
        ("proxy.example.com:1080", format!("127.0.0.1:{socks}")),
        ("proxy.example.com:3128", format!("127.0.0.1:{http}")),
    ];
    let cli = |args: &[&str]| -> Value {
        let mut cmd = Command::new(BIN);
        cmd.args(args).arg("--json");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };

    let operator = run_block(BLOCKS[0], dir, &env, &values);
    let link = operator
        .split_whitespace()
        .find(|w| w.starts_with("traffix://pair?"))
        .unwrap_or_else(|| panic!("`traffix pair bob` printed a link:\n{operator}"))
        .trim_matches(['\'', '"'])
        .to_owned();
    values.insert(0, ("traffix://pair?server=proxy.example.com:8443&pin=PIN&code=CODE", link));

    run_block(BLOCKS[1], dir, &env, &values);
    let device = wait_for("bob's node online", || {
        let devices = cli(&["device", "list"]);
        devices.as_array()?.iter().find(|d| d["online"] == true).and_then(|d| d["id"].as_str().map(str::to_owned))
    });
    let pass = cli(&["user", "show", "alice"])["proxy_password"].as_str().unwrap().to_owned();
    values.push(("PROXYPASS", pass));
    values.push(("6a40ccfb", device[..8].to_owned()));

    let client = run_block(BLOCKS[2], dir, &env, &values);
    assert_eq!(client.matches("hello from origin").count(), 3, "each client line reached the origin:\n{client}");

    let daily = run_block(BLOCKS[3], dir, &env, &values);
    assert!(daily.contains("device.unban"), "the audit list shows the unban:\n{daily}");
    let w = cli(&["withdrawal", "list"]);
    assert_eq!(w[0]["status"], "approved", "{w}");
}
