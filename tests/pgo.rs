//! The release build's profile-guided optimisation (`.cargo/config.toml`, `pgo/rustc-wrapper`,
//! `pgo/zoho-auth-proxy.profdata`): the wrapper adds the committed profile to optimised
//! compilations only, and leaves every other compilation exactly as cargo asked for it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A stand-in for rustc: `-vV` reports the LLVM version in `FAKE_LLVM`; anything else prints its
/// arguments, one a line, so the test sees exactly what the wrapper passed on.
fn fake_rustc(dir: &Path) -> PathBuf {
    let path = dir.join("rustc");
    std::fs::write(
        &path,
        "#!/usr/bin/env bash\n\
         if [ \"$1\" = -vV ]; then echo 'rustc 1.95.0'; echo \"LLVM version: $FAKE_LLVM\"; exit 0; fi\n\
         if [ \"$1\" = --env ]; then exec env; fi\n\
         printf '%s\\n' \"$@\"\n",
    )
    .expect("write the fake rustc");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("make the fake rustc executable");
    path
}

/// Runs the wrapper as cargo does (`rustc-wrapper RUSTC ARGS...`) and returns what "rustc" got.
fn wrapped(llvm: &str, args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let rustc = fake_rustc(dir.path());
    let mut cmd = Command::new(repo().join("pgo/rustc-wrapper"));
    cmd.arg(&rustc)
        .args(args)
        .env("FAKE_LLVM", llvm)
        .env_remove("ZOHO_AUTH_PROXY_PGO");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run pgo/rustc-wrapper");
    assert!(
        out.status.success(),
        "wrapper failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn profile_flag() -> String {
    format!(
        "-Cprofile-use={}",
        repo().join("pgo/zoho-auth-proxy.profdata").display()
    )
}

fn wanted_llvm() -> u32 {
    std::fs::read_to_string(repo().join("pgo/llvm-major"))
        .expect("pgo/llvm-major")
        .trim()
        .parse()
        .expect("pgo/llvm-major holds a number")
}

/// An LLVM version for the fake rustc, the arguments cargo passes, and extra environment.
type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);

const RELEASE: [&str; 5] = ["--crate-name", "h2", "--edition=2021", "-C", "opt-level=3"];

#[test]
fn an_optimised_compilation_gets_the_profile_and_nothing_else_changes() {
    let llvm = format!("{}.1.2", wanted_llvm());
    let got = wrapped(&llvm, &RELEASE, &[]);
    let mut expected: Vec<String> = RELEASE.iter().map(|s| s.to_string()).collect();
    expected.push(profile_flag());
    expected.push("-Cllvm-args=-no-pgo-warn-mismatch".into());
    assert_eq!(got, expected);

    // The one-argument spelling and a newer LLVM (which reads older profiles) alike.
    let newer = format!("{}.0.0", wanted_llvm() + 1);
    let got = wrapped(&newer, &["--crate-name", "x", "-Copt-level=3"], &[]);
    assert_eq!(
        got.get(3).map(String::as_str),
        Some(profile_flag().as_str())
    );
}

#[test]
fn every_other_compilation_is_passed_on_untouched() {
    let llvm = format!("{}.1.2", wanted_llvm());
    let older = format!("{}.1.0", wanted_llvm() - 1);
    let cases: Vec<Case> = vec![
        // debug builds, tests, clippy and build scripts
        (
            &llvm,
            vec!["--crate-name", "x", "-C", "opt-level=0"],
            vec![],
        ),
        (
            &llvm,
            vec!["--crate-name", "x", "-C", "opt-level=2"],
            vec![],
        ),
        // cargo's target query
        (
            &llvm,
            vec!["-", "--crate-name", "___", "--print=cfg"],
            vec![],
        ),
        // the instrumented build that records the profile, and builds naming their own profile
        (
            &llvm,
            vec!["-C", "opt-level=3", "-Cprofile-generate=/tmp/raw"],
            vec![],
        ),
        (
            &llvm,
            vec!["-C", "opt-level=3", "-C", "profile-use=/x.profdata"],
            vec![],
        ),
        (
            &llvm,
            vec!["-C", "opt-level=3", "-Cinstrument-coverage"],
            vec![],
        ),
        (
            &llvm,
            vec!["-C", "opt-level=3", "-Zsanitizer=address"],
            vec![],
        ),
        (
            &llvm,
            vec!["-C", "opt-level=3", "-Cpasses=sancov-module"],
            vec![],
        ),
        // an LLVM too old to read the profile
        (&older, RELEASE.to_vec(), vec![]),
        ("", RELEASE.to_vec(), vec![]),
        // switched off
        (&llvm, RELEASE.to_vec(), vec![("ZOHO_AUTH_PROXY_PGO", "0")]),
    ];
    for (llvm, args, env) in cases {
        let got = wrapped(llvm, &args, &env);
        let expected: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, expected, "LLVM {llvm:?}, args {args:?}, env {env:?}");
    }
}

#[test]
fn the_committed_profile_is_an_indexed_llvm_profile_and_cargo_uses_the_wrapper() {
    let profile =
        std::fs::read(repo().join("pgo/zoho-auth-proxy.profdata")).expect("the committed profile");
    // llvm::IndexedInstrProf::Magic, little-endian: "\xfflprofi\x81". A Git LFS pointer or a
    // truncated file would fail here rather than as a rustc error in every release build.
    assert_eq!(&profile[..8], b"\xfflprofi\x81");
    assert!(profile.len() > 100_000, "{} bytes", profile.len());

    let config =
        std::fs::read_to_string(repo().join(".cargo/config.toml")).expect(".cargo/config.toml");
    assert!(
        config
            .lines()
            .any(|l| l.trim() == "rustc-wrapper = \"pgo/rustc-wrapper\""),
        "{config}"
    );
    let mode = std::fs::metadata(repo().join("pgo/rustc-wrapper"))
        .expect("pgo/rustc-wrapper")
        .permissions()
        .mode();
    assert_ne!(mode & 0o111, 0, "pgo/rustc-wrapper must be executable");
}

#[test]
fn cargos_hyphenated_environment_variables_reach_rustc() {
    // Cargo gives integration tests `CARGO_BIN_EXE_<bin>` (read with env!), and the binary's name
    // has a hyphen. dash drops such variables when it runs a program; the wrapper must not.
    let llvm = format!("{}.1.2", wanted_llvm());
    for args in [vec!["--env"], vec!["--env", "-C", "opt-level=3"]] {
        let got = wrapped(
            &llvm,
            &args,
            &[(
                "CARGO_BIN_EXE_zoho-auth-proxy",
                "/target/debug/zoho-auth-proxy",
            )],
        );
        assert!(
            got.iter()
                .any(|l| l == "CARGO_BIN_EXE_zoho-auth-proxy=/target/debug/zoho-auth-proxy"),
            "args {args:?}: {got:?}"
        );
    }
}
