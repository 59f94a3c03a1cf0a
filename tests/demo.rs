//! The first run, as a new user tries it: `zoho-auth-proxy demo` prints curl commands, each with a
//! comment naming the status it gets (`# 403 denied: …`). This test starts the demo on free
//! ports, takes the commands from the demo's own output, runs each with the real curl, and
//! checks the status its comment names. The console then lists the requester refusals among
//! them (the Host and browser ones) with their codes.
//!
//! Real binary, real sockets, the demo's in-process fake Zoho; curl must be installed.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The demo process; stopped with SIGTERM (so it removes its temp dir), killed if it lingers.
struct Demo {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Demo {
    fn start(listen: &str, admin: &str) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_zoho-auth-proxy"))
            .args(["demo", "--listen", listen, "--admin", admin])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the demo starts");
        let output = Arc::new(Mutex::new(String::new()));
        for reader in [
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut o) = output.lock() {
                        o.push_str(&line);
                        o.push('\n');
                    }
                }
            });
        }
        Demo { child, output }
    }

    fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let stopped = poll(Duration::from_secs(10), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `done` until it holds or `deadline` passes (short, growing pauses).
fn poll(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(10);
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Runs `command` with `sh -c`: (exit success, stdout).
fn shell(command: &str) -> (bool, String) {
    let out = Command::new("sh")
        .args(["-c", command])
        .output()
        .expect("sh runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The status `curl_command` (one curl invocation) gets: the same command with its body
/// discarded and the status code written instead.
fn status_of(curl_command: &str) -> u16 {
    let rest = curl_command
        .trim()
        .strip_prefix("curl ")
        .unwrap_or_else(|| panic!("a curl command: {curl_command}"));
    let (_, code) = shell(&format!(
        "curl -o /dev/null -w '%{{http_code}}' --max-time 20 {rest}"
    ));
    code.trim().parse().unwrap_or(0)
}

/// A printed example: the command, the status its comment names, and the comment.
struct Example {
    command: String,
    status: u16,
    comment: String,
}

/// Every `curl` line of the demo's banner, split at its `#` comment.
fn examples(banner: &str) -> Vec<Example> {
    banner
        .lines()
        .filter(|l| l.trim_start().starts_with("curl "))
        .map(|line| {
            let (command, comment) = line
                .rsplit_once("   # ")
                .unwrap_or_else(|| panic!("every printed command has a comment: {line}"));
            let status = comment
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("the comment starts with the status it names: {line}"));
            Example {
                command: command.trim().to_string(),
                status,
                comment: comment.to_string(),
            }
        })
        .collect()
}

#[test]
fn every_command_the_demo_prints_gets_the_status_its_comment_names() {
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let demo = Demo::start(&listen, &admin);
    let printed = poll(Duration::from_secs(60), || {
        demo.output().contains("Press Ctrl-C to stop.")
    });
    assert!(printed, "the demo prints its banner:\n{}", demo.output());
    let ready = poll(Duration::from_secs(60), || {
        status_of(&format!("curl -s http://{admin}/readyz")) == 200
    });
    assert!(ready, "the demo becomes ready:\n{}", demo.output());

    let banner = demo.output();
    let examples = examples(&banner);
    assert!(
        examples.len() >= 10,
        "the banner holds the examples:\n{banner}"
    );
    let mut failures = Vec::new();
    for e in &examples {
        // A pipeline (`curl … | grep …`): the status is curl's, and the whole line must succeed
        // (grep finds what it looks for).
        let (curl, piped) = match e.command.split_once(" | ") {
            Some((curl, _)) => (curl, true),
            None => (e.command.as_str(), false),
        };
        let got = status_of(curl);
        if got != e.status {
            failures.push(format!("{} -> {got}, comment: # {}", e.command, e.comment));
        }
        let (ok, out) = shell(&e.command);
        if !ok || (piped && out.trim().is_empty()) {
            failures.push(format!("{} failed as printed: {out}", e.command));
        }
    }
    assert!(
        failures.is_empty(),
        "printed commands that do not do what their comment says:\n{}\n\nbanner:\n{banner}",
        failures.join("\n")
    );
    for expected in [201, 403, 400, 200] {
        assert!(
            examples.iter().any(|e| e.status == expected),
            "the examples show a {expected}"
        );
    }

    // The requester refusals among them are on the console, with their codes and counts.
    let (ok, console) = shell(&format!("curl -s http://{admin}/"));
    assert!(ok, "the console answers");
    for code in ["PROXY_HOST_NOT_ALLOWED", "PROXY_BROWSER_REQUEST"] {
        assert!(
            console.contains(&format!("{code} (rule ")),
            "{code} is among the recent decisions:\n{console}"
        );
        assert!(
            console.contains(&format!("<tr id=\"refusals-{code}\">")),
            "{code} is counted:\n{console}"
        );
    }
}
