//! The command-line client (`sipban block IP`, `sipban console`) against a
//! daemon run in-process: fake Asterisk manager, dry-run firewall, console
//! on an ephemeral port. The built binary is run with `--console`; the
//! interactive session is driven through a pseudo-terminal (python3's
//! `pty`). Library-level tests cover timeouts and odd server output with
//! small fake consoles.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::Stdio;
use std::time::Duration;

use sipban::ami::Secret;
use sipban::client::{Client, ClientError, ConsoleTarget, SECRET_ENV, Timeouts, is_error_reply};
use sipban::clock::Clock;
use sipban::daemon::Daemon;
use sipban::firewall::DryRun;
use sipban::policy::Whitelist;
use support::{ConsoleClient, FakeAmi, settings};
use tokio::io::AsyncWriteExt;

const T0: u64 = 1_800_000_000;
const BIN: &str = env!("CARGO_BIN_EXE_sipban");

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A daemon with its console on an ephemeral port.
struct Harness {
    _ami: FakeAmi,
    dir: tempfile::TempDir,
    daemon: Daemon,
}

impl Harness {
    async fn new() -> Harness {
        Self::with(|_| {}).await
    }

    /// Lets the test adjust the settings first.
    async fn with(tweak: impl FnOnce(&mut sipban::daemon::Settings)) -> Harness {
        let ami = FakeAmi::start().await;
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("sipban.dump");
        let mut s = settings(&ami, &dump, Whitelist::default());
        tweak(&mut s);
        let daemon = Daemon::start(s, Box::new(DryRun::new()), Clock::manual(T0))
            .await
            .expect("daemon starts");
        Harness {
            _ami: ami,
            dir,
            daemon,
        }
    }

    /// With allow and deny list files (empty) in its directory.
    async fn with_lists() -> Harness {
        let ami = FakeAmi::start().await;
        let dir = tempfile::tempdir().unwrap();
        let (allow, deny) = (dir.path().join("allow"), dir.path().join("deny"));
        std::fs::write(&allow, "").unwrap();
        std::fs::write(&deny, "").unwrap();
        let policy = sipban::daemon::PolicySettings {
            detector: Default::default(),
            allow,
            deny,
        };
        let s = settings(&ami, &dir.path().join("dump"), Whitelist::default());
        let daemon =
            Daemon::start_with(s, Box::new(DryRun::new()), Clock::manual(T0), Some(policy))
                .await
                .expect("daemon starts");
        Harness {
            _ami: ami,
            dir,
            daemon,
        }
    }

    fn console(&self) -> String {
        self.daemon.console_addr.to_string()
    }

    /// The active bans, as the console lists them.
    async fn banned(&self) -> Vec<IpAddr> {
        let (mut c, _) = ConsoleClient::connect(self.daemon.console_addr).await;
        let list = c.command("block").await;
        sipban::client::parse_ban_list(&list)
    }
}

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn assert_code(&self, code: i32) {
        assert_eq!(self.code, Some(code), "{self:#?}");
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
    }
}

/// Runs `program args` with `stdin` as input and `env` added, at most 60 s
/// (a guard against a hang, not a wait).
async fn run_with(program: &str, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_remove("XDG_STATE_HOME")
        .env_remove(SECRET_ENV)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish within 60 s"))
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `sipban --console ADDR args...` with an empty standard input.
async fn sipban(console: &str, args: &[&str]) -> Run {
    let mut all = vec!["--console", console];
    all.extend_from_slice(args);
    run_with(BIN, &all, "", &[]).await
}

/// A port nobody listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_list_and_unblock_from_the_command_line() {
    let h = Harness::new().await;
    let console = h.console();

    let run = sipban(&console, &["block", "203.0.113.5"]).await;
    run.assert_code(0);
    assert_eq!(run.stdout, "203.0.113.5 block\n");
    assert_eq!(run.stderr, "");
    assert_eq!(h.banned().await, vec![ip("203.0.113.5")]);

    // `block` alone lists the bans: `[YYYY-MM-DD HH:MM:SS] IP`.
    let run = sipban(&console, &["block"]).await;
    run.assert_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{run:#?}");
    assert!(lines[0].starts_with('['), "{run:#?}");
    assert!(lines[0].ends_with("] 203.0.113.5"), "{run:#?}");

    let run = sipban(&console, &["block", "203.0.113.5"]).await;
    run.assert_code(0);
    assert_eq!(run.stdout, "203.0.113.5 previously blocked\n");

    // Not banned: information (the state asked for holds), not an error.
    let run = sipban(&console, &["unblock", "198.51.100.77"]).await;
    run.assert_code(0);
    assert_eq!(run.stdout, "198.51.100.77 is not previously blocked\n");
    assert_eq!(run.stderr, "");

    let run = sipban(&console, &["unblock", "203.0.113.5"]).await;
    run.assert_code(0);
    assert_eq!(run.stdout, "203.0.113.5 unblocked\n");
    assert_eq!(h.banned().await, Vec::<IpAddr>::new());

    // Replies without an error wording pass through, several lines too.
    let run = sipban(&console, &["help"]).await;
    run.assert_code(0);
    assert!(run.stdout.contains("unblock [ip address]"), "{run:#?}");
    assert!(!run.stdout.contains("sipban>"), "{run:#?}");
    assert!(!run.stdout.contains("Sipban "), "banner shown: {run:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_replies_go_to_stderr_with_exit_code_1() {
    let h = Harness::new().await;
    let console = h.console();

    let run = sipban(&console, &["block", "300.1.1.1"]).await;
    run.assert_code(1);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, "300.1.1.1 don't seems like a valid address\n");

    let run = sipban(&console, &["unblock"]).await;
    run.assert_code(1);
    assert_eq!(run.stderr, "ip address missing\n");

    let run = sipban(&console, &["block", "203.0.113.1", "203.0.113.2"]).await;
    run.assert_code(1);
    assert!(run.stderr.starts_with("expected one address"), "{run:#?}");

    let run = sipban(&console, &["flush", "now"]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("flush takes no argument"), "{run:#?}");
    assert_eq!(run.stdout, "");

    assert_eq!(h.banned().await, Vec::<IpAddr>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_commands_fail() {
    let h = Harness::new().await;
    let console = h.console();

    // Not a console command sipban knows: a usage error, nothing sent.
    let run = sipban(&console, &["frobnicate"]).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("unrecognized subcommand 'frobnicate'"),
        "{run:#?}"
    );

    // Unknown to the console: its `Invalid command` reply, exit 1.
    let run = run_with(
        BIN,
        &["--console", &console, "console"],
        "frobnicate now\n",
        &[],
    )
    .await;
    run.assert_code(1);
    assert_eq!(run.stderr, "Invalid command: frobnicate now\n");
    assert_eq!(run.stdout, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_command_is_a_subcommand() {
    let run = run_with(BIN, &["--help"], "", &[]).await;
    run.assert_code(0);
    for name in sipban::client::COMMANDS
        .iter()
        .map(|c| c.name)
        .chain(["console"])
    {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{name} "))),
            "{name} missing from\n{}",
            run.stdout
        );
    }
    let run = run_with(BIN, &["check", "--help"], "", &[]).await;
    run.assert_code(0);
    assert!(run.stdout.contains("sipban [OPTIONS] check IP"), "{run:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_console_is_a_clear_error() {
    let port = closed_port();
    let console = format!("127.0.0.1:{port}");
    for args in [&["ping"][..], &["block", "203.0.113.5"], &["console"]] {
        let run = sipban(&console, args).await;
        run.assert_code(3);
        assert_eq!(
            run.stderr,
            format!(
                "sipban: cannot reach the console at {console}: Connection refused (is sipban running?)\n"
            ),
            "{args:?}"
        );
        assert_eq!(run.stdout, "");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_address_comes_from_the_config() {
    let h = Harness::new().await;
    let conf = h.dir.path().join("sipban.conf");
    std::fs::write(
        &conf,
        format!(
            "[control]\naddress = \"127.0.0.1\"\nport = \"{}\"\n",
            h.daemon.console_addr.port()
        ),
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let run = run_with(BIN, &["-c", conf, "block", "203.0.113.6"], "", &[]).await;
    run.assert_code(0);
    assert_eq!(run.stdout, "203.0.113.6 block\n");
    assert_eq!(h.banned().await, vec![ip("203.0.113.6")]);

    // A config named with -c must exist.
    let missing = h.dir.path().join("missing.conf");
    let missing = missing.to_str().unwrap();
    let run = run_with(BIN, &["-c", missing, "block"], "", &[]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .starts_with(&format!("sipban: cannot read config {missing}: ")),
        "{run:#?}"
    );
    assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_reads_commands_from_a_pipe() {
    let h = Harness::new().await;
    let console = h.console();
    let script = "block 203.0.113.7\r\n\n# a comment\n  block  \nunblock 203.0.113.7\n\
                  frobnicate\nblock 203.0.113.8\nuptime\nquit\nblock 203.0.113.99\n";
    let run = run_with(BIN, &["--console", &console, "console"], script, &[]).await;
    // One reply was an error: exit 1, and every other command still ran.
    run.assert_code(1);
    let out: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(out.len(), 5, "{run:#?}");
    assert_eq!(out[0], "203.0.113.7 block");
    assert!(out[1].ends_with("] 203.0.113.7"), "{run:#?}");
    assert_eq!(out[2], "203.0.113.7 unblocked");
    assert_eq!(out[3], "203.0.113.8 block");
    assert!(out[4].starts_with("Uptime "), "{run:#?}");
    assert_eq!(run.stderr, "Invalid command: frobnicate\n");
    // Nothing after `quit` is sent.
    assert_eq!(h.banned().await, vec![ip("203.0.113.8")]);

    // All good: exit 0.
    let run = run_with(
        BIN,
        &["--console", &console, "console"],
        "unblock 203.0.113.8",
        &[],
    )
    .await;
    run.assert_code(0);
    assert_eq!(run.stdout, "203.0.113.8 unblocked\n");
}

// ---------------------------------------------------------------------------
// The interactive session, through a pseudo-terminal.

/// Drives a program in a pseudo-terminal: `PTY_ARGV` (JSON list) is run,
/// `PTY_STEPS` (JSON list of `["send", text]` / `["expect", text]`) played;
/// an expectation must show up in the output after the previous one, within
/// 15 s. Prints `{"status": exit code, "transcript": output}` as JSON;
/// exits 2 with the transcript on stderr when an expectation fails.
const PTY_DRIVER: &str = r#"
import fcntl, json, os, pty, select, struct, sys, termios, time

argv = json.loads(os.environ["PTY_ARGV"])
steps = json.loads(os.environ["PTY_STEPS"])
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
    os.execv(argv[0], argv)

out = b""
def pump(timeout):
    global out
    r, _, _ = select.select([fd], [], [], timeout)
    if not r:
        return True
    try:
        data = os.read(fd, 65536)
    except OSError:
        return False
    if not data:
        return False
    out += data
    return True

def fail(why):
    sys.stderr.write(why + "\n--- transcript ---\n" + out.decode("utf-8", "replace"))
    os.kill(pid, 9)
    sys.exit(2)

mark = 0
for kind, text in steps:
    if kind == "send":
        os.write(fd, text.encode())
    else:
        want = text.encode()
        deadline = time.monotonic() + 15
        while out.find(want, mark) < 0:
            left = deadline - time.monotonic()
            if left <= 0 or not pump(left):
                if out.find(want, mark) >= 0:
                    break
                fail("expected %r" % text)
        mark = out.find(want, mark) + len(want)

deadline = time.monotonic() + 15
while time.monotonic() < deadline and pump(deadline - time.monotonic()):
    pass
_, status = os.waitpid(pid, 0)
code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
print(json.dumps({"status": code, "transcript": out.decode("utf-8", "replace")}))
"#;

enum Step {
    Send(&'static str),
    Expect(&'static str),
}
use Step::{Expect, Send};

/// Runs `sipban --console <console> console` in a pseudo-terminal with
/// `env`, plays `steps`; returns exit code and transcript.
async fn pty_session(console: &str, steps: &[Step], env: &[(&str, &str)]) -> (i64, String) {
    let argv = serde_json::json!([BIN, "--console", console, "console"]).to_string();
    let steps = serde_json::Value::Array(
        steps
            .iter()
            .map(|s| match s {
                Send(t) => serde_json::json!(["send", t]),
                Expect(t) => serde_json::json!(["expect", t]),
            })
            .collect(),
    )
    .to_string();
    let mut all_env = vec![
        ("PTY_ARGV", argv.as_str()),
        ("PTY_STEPS", steps.as_str()),
        ("TERM", "xterm"),
    ];
    all_env.extend_from_slice(env);
    let run = run_with("python3", &["-c", PTY_DRIVER], "", &all_env).await;
    assert_eq!(run.code, Some(0), "pty driver failed:\n{}", run.stderr);
    let result: serde_json::Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("pty driver output {e}: {}", run.stdout));
    (
        result["status"].as_i64().unwrap(),
        result["transcript"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_session_with_completion_and_history() {
    let h = Harness::new().await;
    let console = h.console();
    let home = tempfile::tempdir().unwrap();
    let home_str = home.path().to_str().unwrap();

    let (status, transcript) = pty_session(
        &console,
        &[
            Expect("use 'help' for more commands"),
            Expect("sipban> "),
            Send("block 203.0.113.9\r"),
            Expect("203.0.113.9 block"),
            Expect("sipban> "),
            Send("block 203.0.113.77\r"),
            Expect("203.0.113.77 block"),
            Expect("sipban> "),
            // Ctrl-C drops the line typed so far.
            Send("garbage-line"),
            Expect("garbage-line"),
            Send("\x03"),
            Expect("sipban> "),
            // A command name completes, with its space.
            Send("unb\t"),
            Expect("unblock "),
            // Two banned addresses match: the second Tab lists them.
            Send("203.0.113.\t\t"),
            Expect("203.0.113.77"),
            // One more digit makes it unique: Tab completes it.
            Send("7\t"),
            Expect("203.0.113.77"),
            Send("\r"),
            Expect("203.0.113.77 unblocked"),
            Expect("sipban> "),
            Send("\x04"),
        ],
        &[("HOME", home_str)],
    )
    .await;
    assert_eq!(status, 0, "{transcript}");
    assert!(transcript.contains("203.0.113.9"), "{transcript}");
    assert!(
        !transcript.contains("Invalid command"),
        "Ctrl-C line was sent:\n{transcript}"
    );
    // The address completed by Tab was unblocked, the other one stays.
    assert_eq!(h.banned().await, vec![ip("203.0.113.9")]);

    let history = std::fs::read_to_string(home.path().join(".sipban_history"))
        .expect("history written to $HOME/.sipban_history");
    assert!(history.contains("block 203.0.113.9"), "{history}");
    assert!(history.contains("unblock 203.0.113.77"), "{history}");
    assert!(!history.contains("garbage-line"), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_kept_across_sessions_and_its_failures_are_warnings() {
    let h = Harness::new().await;
    let console = h.console();
    let state = tempfile::tempdir().unwrap();
    let state_str = state.path().to_str().unwrap();
    let env = [("XDG_STATE_HOME", state_str), ("HOME", "/nonexistent")];

    let (status, transcript) = pty_session(
        &console,
        &[
            Expect("sipban> "),
            Send("block 203.0.113.44\r"),
            Expect("203.0.113.44 block"),
            Expect("sipban> "),
            Send("exit\r"),
        ],
        &env,
    )
    .await;
    assert_eq!(status, 0, "{transcript}");
    let file = state.path().join("sipban/history");
    assert!(file.exists(), "{transcript}");

    // Up arrow recalls the last command of the previous session (`exit` is
    // the last one, so go up twice).
    let (status, transcript) = pty_session(
        &console,
        &[
            Expect("sipban> "),
            Send("\x1b[A"),
            Send("\x1b[A"),
            Expect("block 203.0.113.44"),
            Send("\r"),
            Expect("203.0.113.44 previously blocked"),
            Expect("sipban> "),
            Send("\x04"),
        ],
        &env,
    )
    .await;
    assert_eq!(status, 0, "{transcript}");

    // A history that cannot be saved: a warning, the session still works.
    let blocker = state.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let (status, transcript) = pty_session(
        &console,
        &[
            Expect("sipban> "),
            Send("unblock 203.0.113.44\r"),
            Expect("203.0.113.44 unblocked"),
            Expect("sipban> "),
            Send("\x04"),
            Expect("warning: cannot save history"),
        ],
        &[("XDG_STATE_HOME", blocker.to_str().unwrap())],
    )
    .await;
    assert_eq!(status, 0, "{transcript}");
    assert_eq!(h.banned().await, Vec::<IpAddr>::new());
}

// ---------------------------------------------------------------------------
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_gets_in_while_200_idle_sessions_are_held() {
    let h = Harness::new().await;
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(ConsoleClient::connect(h.daemon.console_addr).await.0);
    }
    let run = sipban(&h.console(), &["uptime"]).await;
    run.assert_code(0);
    assert_eq!(run.stdout, "Uptime 00:00:00\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_logs_in_with_the_secret_of_the_environment() {
    let h = Harness::with(|s| s.console_secret = Some(Secret::new("s3cret pass"))).await;
    let console = h.console();
    let args = ["--console", &console, "block", "203.0.113.5"];
    let run = run_with(BIN, &args, "", &[]).await;
    run.assert_code(1);
    assert_eq!(run.stderr, "error: login required (login SECRET)\n");
    assert!(h.banned().await.is_empty());

    let run = run_with(BIN, &args, "", &[(SECRET_ENV, "wrong")]).await;
    run.assert_code(3);
    assert_eq!(
        run.stderr,
        format!(
            "sipban: the console at {console} refused the login: error: login failed (2 more tries allowed)\n"
        )
    );
    assert!(
        !run.stderr.contains("wrong"),
        "the secret tried is not shown"
    );

    let run = run_with(BIN, &args, "", &[(SECRET_ENV, "s3cret pass")]).await;
    run.assert_code(0);
    assert_eq!(run.stdout, "203.0.113.5 block\n");
    // A piped session logs in once, first.
    let run = run_with(
        BIN,
        &["--console", &console, "console"],
        "unblock 203.0.113.5\nuptime\n",
        &[(SECRET_ENV, "s3cret pass")],
    )
    .await;
    run.assert_code(0);
    assert_eq!(run.stdout, "203.0.113.5 unblocked\nUptime 00:00:00\n");

    // The library: a target with its secret.
    let addr = h.daemon.console_addr;
    let (banner, reply) = tokio::task::spawn_blocking(move || {
        let target = ConsoleTarget {
            addr,
            secret: Some(Secret::new("s3cret pass")),
        };
        let mut c = Client::open(&target).unwrap();
        (c.banner().to_string(), c.command("status").unwrap())
    })
    .await
    .unwrap();
    assert!(!banner.contains("login required"), "{banner}");
    assert!(!reply.is_error, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_imports_a_file_by_sending_its_lines() {
    let h = Harness::with_lists().await;
    let console = h.console();
    let csv = h.dir.path().join("bulk list.csv");
    std::fs::write(
        &csv,
        "address,note\r\n203.0.113.0/24,\"scanners, bulk\"\r\n2001:db8:7::/48,\r\n",
    )
    .unwrap();
    let path = csv.to_str().unwrap();
    // The daemon has no import_dir: only the client reads the file.
    let run = sipban(&console, &["deny", "import", path]).await;
    run.assert_code(0);
    assert_eq!(run.stdout, "2 of 2 entries added to the deny list\n");
    let run = sipban(&console, &["deny", "export"]).await;
    assert!(
        run.stdout.contains("203.0.113.0/24,\"scanners, bulk\""),
        "{run:#?}"
    );

    // Refused by the deny guard: nothing imported, the line named.
    std::fs::write(&csv, "198.51.100.0/24\n0.0.0.0/0,all\n").unwrap();
    let run = sipban(&console, &["deny", "import", path]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .starts_with("error: nothing imported: 1 entry refused")
            && run.stderr.contains("line 2: 0.0.0.0/0 is wider than /8"),
        "{run:#?}"
    );
    let run = sipban(&console, &["deny", "import", "--force", path]).await;
    run.assert_code(0);
    assert_eq!(run.stdout, "2 of 2 entries added to the deny list\n");

    // A bad file is refused by the client, naming file:line, not content.
    std::fs::write(&csv, "203.0.113.9\nKEY=s3cret\0\n").unwrap();
    let run = sipban(&console, &["allow", "import", path]).await;
    run.assert_code(1);
    assert_eq!(
        run.stderr,
        format!("error: {path}:2: control byte 0x00 at column 11; nothing sent\n")
    );
    let run = sipban(&console, &["allow", "list"]).await;
    assert_eq!(run.stdout, "");
    let run = sipban(&console, &["deny", "import"]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .starts_with("usage: deny import [--force] FILE.csv"),
        "{run:#?}"
    );
}

// The library client against fake consoles: timeouts and odd output.

/// A fake console on an ephemeral port: `serve` runs on the one accepted
/// connection, in a thread.
fn fake_console(
    serve: impl FnOnce(std::net::TcpStream) + std::marker::Send + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((sock, _)) = listener.accept() {
            serve(sock);
        }
    });
    addr
}

const SHORT: Timeouts = Timeouts {
    connect: Duration::from_millis(300),
    reply: Duration::from_millis(300),
};

/// Reads one command line.
fn read_line(sock: &mut std::net::TcpStream) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match sock.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => return Some(String::from_utf8_lossy(&line).into_owned()),
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
    }
}

#[test]
fn a_silent_server_times_out_clearly() {
    let addr = fake_console(|sock| {
        // Accepts, never speaks; holds the socket until the client leaves.
        let mut sock = sock;
        let _ = sock.read(&mut [0u8; 1]);
    });
    let err = Client::connect_with(addr, SHORT).unwrap_err();
    assert!(matches!(err, ClientError::NoBanner { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("the console at {addr} sent no prompt within 300 ms (is that sipban's console?)")
    );
}

#[test]
fn a_reply_that_never_comes_times_out_clearly() {
    let addr = fake_console(|mut sock| {
        sock.write_all(b"\nSipban test\nsipban>").unwrap();
        let _ = read_line(&mut sock);
        // No reply; wait for the client to give up.
        let _ = sock.read(&mut [0u8; 1]);
    });
    let mut client = Client::connect_with(addr, SHORT).unwrap();
    assert_eq!(client.banner(), "Sipban test");
    let err = client.command("ping").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("the console at {addr} did not answer \"ping\" within 300 ms")
    );
    // The session is over after an error.
    assert!(!client.is_open());
    assert!(matches!(
        client.command("ping"),
        Err(ClientError::Closed { .. })
    ));
}

#[test]
fn odd_output_is_framed_and_made_printable() {
    let addr = fake_console(|mut sock| {
        // Banner split in pieces, a reply with control bytes, bad UTF-8,
        // CRLF, a prompt-like word inside, an empty reply, then a close.
        sock.set_nodelay(true).unwrap();
        for piece in [&b"\nSip"[..], b"ban x\nsip", b"ban>"] {
            sock.write_all(piece).unwrap();
            sock.flush().unwrap();
        }
        let _ = read_line(&mut sock);
        sock.write_all(b"\x1b[2Jsipban> \xff\r\nline two\r\n\nsipban>")
            .unwrap();
        let _ = read_line(&mut sock);
        sock.write_all(b"sipban>").unwrap();
        let _ = read_line(&mut sock);
        sock.write_all(b"Invalid command: x\n\nsip").unwrap();
        // Closed mid-prompt.
    });
    let mut client = Client::connect_with(addr, SHORT).unwrap();
    assert_eq!(client.banner(), "Sipban x");
    let reply = client.command("first").unwrap();
    assert_eq!(reply.text, "\u{fffd}[2Jsipban> \u{fffd}\nline two");
    assert!(!reply.is_error);
    let reply = client.command("").unwrap();
    assert_eq!(reply.text, "");
    let err = client.command("x").unwrap_err();
    assert!(matches!(err, ClientError::Closed { .. }), "{err:?}");
    assert!(err.to_string().contains("Invalid command: x"), "{err}");
}

#[test]
fn a_command_is_one_line() {
    let addr = fake_console(|mut sock| {
        sock.write_all(b"sipban>").unwrap();
        let _ = sock.read(&mut [0u8; 1]);
    });
    let mut client = Client::connect_with(addr, SHORT).unwrap();
    let err = client.command("block 1.2.3.4\nflush").unwrap_err();
    assert!(matches!(err, ClientError::BadLine(_)), "{err:?}");
    assert!(is_error_reply("Invalid command: block"));
}

/// The library client against the real console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_client_against_the_daemon() {
    let h = Harness::new().await;
    let addr = h.daemon.console_addr;
    let replies = tokio::task::spawn_blocking(move || {
        let mut c = Client::connect(addr).unwrap();
        let replies =
            ["block 2001:db8::5", "block", "unblock", "quit"].map(|line| c.command(line).unwrap());
        (c.banner().to_string(), replies, c.is_open())
    })
    .await
    .unwrap();
    let (banner, [blocked, listed, missing, quit], open) = replies;
    assert!(banner.starts_with("Sipban "), "{banner}");
    assert_eq!(blocked.text, "2001:db8::5 block");
    assert!(!blocked.is_error);
    assert!(listed.text.ends_with("] 2001:db8::5"), "{listed:?}");
    assert_eq!(missing.text, "ip address missing");
    assert!(missing.is_error);
    assert_eq!(quit.text, "");
    assert!(!open);
}
