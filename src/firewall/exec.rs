//! Running firewall tools: no shell, arguments as a list, optional stdin,
//! the exit status always checked.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::FirewallError;

/// `dir/name` if it exists there, else `name` (found on $PATH).
pub fn tool(dir: &str, name: &str) -> String {
    if !dir.is_empty() {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p.to_string_lossy().into_owned();
        }
    }
    name.to_string()
}

/// Runs `cmd args`, feeding `stdin`; returns stdout or the tool's error text.
pub fn run(cmd: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<String, FirewallError> {
    let what = || format!("{cmd} {}", args.join(" "));
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| FirewallError::Unavailable {
            tool: cmd.to_string(),
            detail: e.to_string(),
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A tool that exits early closes the pipe; its status tells why.
        let _ = pipe.write_all(input);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| FirewallError::Command {
            what: what(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let detail = shorten(String::from_utf8_lossy(&out.stderr).trim(), 500);
        Err(FirewallError::Command {
            what: what(),
            detail,
        })
    }
}

/// `text` cut to at most `max` bytes at a character boundary (a tool's
/// message may be in any language), `...` marking the cut.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", text.get(..cut).unwrap_or_default())
}

/// True if `cmd args` runs and exits 0.
pub fn works(cmd: &str, args: &[&str]) -> bool {
    run(cmd, args, None).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_tool_messages_are_cut_at_a_character() {
        // 499 ASCII bytes then a 2-byte character across the 500th byte:
        // `String::truncate(500)` panicked here.
        let msg = format!("{}é and more", "x".repeat(499));
        let short = shorten(&msg, 500);
        assert_eq!(short, format!("{}...", "x".repeat(499)));
        assert_eq!(shorten("short", 500), "short");
        let out = run(
            "sh",
            &["-c", "printf '%0499d\\303\\251tail' 0 >&2; exit 1"],
            None,
        );
        let Err(FirewallError::Command { detail, .. }) = out else {
            panic!("{out:?}");
        };
        assert!(detail.ends_with("..."), "{detail}");
    }
}
