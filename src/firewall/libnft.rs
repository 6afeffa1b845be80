//! In-process nftables: the library behind the `nft` tool (libnftables),
//! loaded at run time. A batch goes to the kernel as one netlink
//! transaction without a fork+exec per batch (about 0.05 ms for a single
//! element instead of 3-5 ms). Without the library, [`Nft`] spawns
//! `nft -j -f -` instead. Set elements, the bulk of a storm, go over
//! netlink directly when they can ([`elements`]).

pub mod elements;

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};

use libloading::Library;

use super::FirewallError;
use super::exec::run;

/// `NFT_CTX_OUTPUT_JSON`: listings in JSON, as `nft -j`.
const OUTPUT_JSON: c_uint = 1 << 4;
/// `NFT_CTX_OUTPUT_TERSE`: listings without set elements, as `nft -t`.
const OUTPUT_TERSE: c_uint = 1 << 11;

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxInt = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxGet = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type SetFlags = unsafe extern "C" fn(*mut c_void, c_uint);
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

struct Lib {
    ctx: *mut c_void,
    free: CtxFree,
    get_output: CtxGet,
    get_error: CtxGet,
    set_flags: SetFlags,
    run_cmd: RunCmd,
    // Must outlive the function pointers above; dropped last.
    _lib: Library,
}

// The context is only ever used by the thread that owns the backend.
unsafe impl Send for Lib {}

impl Drop for Lib {
    fn drop(&mut self) {
        // SAFETY: ctx came from nft_ctx_new and is freed exactly once.
        unsafe { (self.free)(self.ctx) }
    }
}

impl Lib {
    fn open() -> Result<Lib, String> {
        // SAFETY: loading libnftables runs no initialisers with side effects
        // beyond its own; the symbols are declared with their C signatures.
        unsafe {
            let lib = Library::new("libnftables.so.1").map_err(|e| e.to_string())?;
            let new: CtxNew = *lib.get(b"nft_ctx_new").map_err(|e| e.to_string())?;
            let free: CtxFree = *lib.get(b"nft_ctx_free").map_err(|e| e.to_string())?;
            let buffer_output: CtxInt = *lib
                .get(b"nft_ctx_buffer_output")
                .map_err(|e| e.to_string())?;
            let buffer_error: CtxInt = *lib
                .get(b"nft_ctx_buffer_error")
                .map_err(|e| e.to_string())?;
            let get_output: CtxGet = *lib
                .get(b"nft_ctx_get_output_buffer")
                .map_err(|e| e.to_string())?;
            let get_error: CtxGet = *lib
                .get(b"nft_ctx_get_error_buffer")
                .map_err(|e| e.to_string())?;
            let set_flags: SetFlags = *lib
                .get(b"nft_ctx_output_set_flags")
                .map_err(|e| e.to_string())?;
            let run_cmd: RunCmd = *lib
                .get(b"nft_run_cmd_from_buffer")
                .map_err(|e| e.to_string())?;
            let ctx = new(0);
            if ctx.is_null() {
                return Err("nft_ctx_new failed".into());
            }
            let lib = Lib {
                ctx,
                free,
                get_output,
                get_error,
                set_flags,
                run_cmd,
                _lib: lib,
            };
            if buffer_output(ctx) != 0 || buffer_error(ctx) != 0 {
                return Err("cannot buffer libnftables output".into());
            }
            set_flags(ctx, OUTPUT_JSON);
            Ok(lib)
        }
    }

    fn run(&mut self, script: &str) -> Result<String, String> {
        let c = CString::new(script).map_err(|_| "NUL byte in nft script".to_string())?;
        // SAFETY: ctx is valid; the buffers are owned by ctx and valid until
        // the next call, and are copied out before returning.
        unsafe {
            let rc = (self.run_cmd)(self.ctx, c.as_ptr());
            let take = |p: *const c_char| {
                if p.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(p).to_string_lossy().into_owned()
                }
            };
            let out = take((self.get_output)(self.ctx));
            let err = take((self.get_error)(self.ctx));
            if rc == 0 { Ok(out) } else { Err(err) }
        }
    }
}

/// Runs nft scripts, in-process when the library is there.
pub struct Nft {
    lib: Option<Lib>,
    /// The library is opened on first use, on the thread that applies
    /// changes: its netlink socket belongs to that thread's network
    /// namespace.
    tried: bool,
    bin: String,
    /// Our own element writer, opened on first use like the library.
    elements: Option<elements::Elements>,
    elements_tried: bool,
}

impl Nft {
    /// Uses libnftables if it loads (unless `spawn_only`), else `bin`;
    /// `spawn_only` also keeps set elements in the scripts.
    pub fn new(bin: String, spawn_only: bool) -> Nft {
        Nft {
            lib: None,
            tried: spawn_only,
            bin,
            elements: None,
            elements_tried: spawn_only,
        }
    }

    /// The netlink element writer, unless it cannot be used here.
    pub fn elements(&mut self) -> Option<&mut elements::Elements> {
        if !self.elements_tried {
            self.elements_tried = true;
            match elements::Elements::open() {
                Ok(e) => self.elements = Some(e),
                Err(e) => tracing::info!(
                    "NFT => set elements through nft scripts (netlink not usable: {e})"
                ),
            }
        }
        self.elements.as_mut()
    }

    /// Stops using the element writer (it failed to talk to the kernel).
    pub fn drop_elements(&mut self) {
        self.elements = None;
    }

    fn lib(&mut self) -> Option<&mut Lib> {
        if !self.tried {
            self.tried = true;
            match Lib::open() {
                Ok(lib) => self.lib = Some(lib),
                Err(e) => tracing::info!(
                    "NFT => libnftables not loaded ({e}); running {} per batch",
                    self.bin
                ),
            }
        }
        self.lib.as_mut()
    }

    pub fn in_process(&mut self) -> bool {
        self.lib().is_some()
    }

    /// Runs a script (one transaction); listings come back as JSON.
    pub fn run(&mut self, script: &str) -> Result<String, FirewallError> {
        match self.lib() {
            Some(lib) => lib.run(script).map_err(|detail| FirewallError::Command {
                what: format!("nft {}", first_line(script)),
                detail: detail.trim().to_string(),
            }),
            // `nft -j -f` would expect JSON input: listings get `-j` and
            // their words as arguments, everything else goes in as text.
            None => match script.trim().strip_prefix("list ") {
                Some(what) if !script.trim().contains('\n') => {
                    let mut args = vec!["-j", "list"];
                    args.extend(what.split_whitespace());
                    run(&self.bin, &args, None)
                }
                _ => run(&self.bin, &["-f", "-"], Some(script.as_bytes())),
            },
        }
    }

    /// Whether a `list ...` command succeeds, i.e. the object exists.
    pub fn ok(&mut self, script: &str) -> bool {
        self.run_terse(script).is_ok()
    }

    /// A listing without set elements (as `nft -t`): cheap even when our
    /// sets hold 100k elements (a chain listing would otherwise fetch them).
    pub fn run_terse(&mut self, script: &str) -> Result<String, FirewallError> {
        match self.lib() {
            Some(lib) => {
                // SAFETY: ctx is valid; flags are plain bits.
                unsafe { (lib.set_flags)(lib.ctx, OUTPUT_JSON | OUTPUT_TERSE) };
                let out = lib.run(script);
                // SAFETY: as above.
                unsafe { (lib.set_flags)(lib.ctx, OUTPUT_JSON) };
                out.map_err(|detail| FirewallError::Command {
                    what: format!("nft {}", first_line(script)),
                    detail: detail.trim().to_string(),
                })
            }
            None => match script.trim().strip_prefix("list ") {
                Some(what) if !script.trim().contains('\n') => {
                    let mut args = vec!["-t", "-j", "list"];
                    args.extend(what.split_whitespace());
                    run(&self.bin, &args, None)
                }
                _ => run(&self.bin, &["-f", "-"], Some(script.as_bytes())),
            },
        }
    }
}

fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or_default();
    match line.char_indices().nth(120) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}
