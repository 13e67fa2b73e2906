//! The C API of edgetune (include/edgetune.h is generated from this crate by cbindgen; the test
//! tests/header.rs fails when the two differ). Every function returns an [`et_status`] and keeps
//! a one-line message for [`et_last_error`]; every body runs under [`guard`], so that no panic
//! crosses the boundary and null pointers and bad UTF-8 become errors.
#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

mod finetune;
mod model;
mod tensor;
mod trainer;

pub use finetune::*;
pub use model::*;
pub use tensor::*;
pub use trainer::*;

/// What a call did. `ET_RUNTIME`, `ET_BAD_INPUT` and `ET_STOPPED` are the `edgetune` command's
/// exit codes for the same failures; `ET_INVALID_ARGUMENT` is the C API's own (misuse of it).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum et_status {
    /// Success.
    ET_OK = 0,
    /// A failure while running that is not the caller's input: a non-finite loss or gradient,
    /// an internal error (a panic inside the library, caught at the boundary).
    ET_RUNTIME = 1,
    /// Bad input: a missing or invalid model file, an unsupported op, data or a shape that does
    /// not fit the model, an option that names nothing, an I/O failure on a named path.
    ET_BAD_INPUT = 2,
    /// A misuse of the API itself: a NULL pointer where a value is required, a string that is
    /// not UTF-8, a shape whose element count overflows.
    ET_INVALID_ARGUMENT = 3,
    /// A run stopped on request (a step callback returned non-zero).
    ET_STOPPED = 130,
}

/// A failure inside a call: its status and one-line message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: et_status,
    pub message: String,
}

impl From<edgetune::Error> for Failure {
    fn from(e: edgetune::Error) -> Failure {
        use edgetune::Error;
        let status = match &e {
            Error::NonFinite(_) | Error::Runtime(_) => et_status::ET_RUNTIME,
            Error::Stopped(_) => et_status::ET_STOPPED,
            _ => et_status::ET_BAD_INPUT,
        };
        Failure { status, message: e.to_string() }
    }
}

pub(crate) fn invalid(message: impl Into<String>) -> Failure {
    Failure { status: et_status::ET_INVALID_ARGUMENT, message: message.into() }
}

pub(crate) fn bad_input(message: impl Into<String>) -> Failure {
    Failure { status: et_status::ET_BAD_INPUT, message: message.into() }
}

pub(crate) type Outcome<T = ()> = Result<T, Failure>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message never holds NUL (it ends the C string); the library's messages are one line.
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // Once the thread's locals are gone (a call from an atexit handler or a thread-local
    // destructor) there is nowhere to keep a message; `with` would panic, outside any catch.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = text);
}

/// Runs the body of an API function: turns a failure into its status and message and a panic
/// into `ET_RUNTIME` (the panic's message kept); the last error is then this call's (""
/// on success, also when a callback inside the call made a failing call).
pub(crate) fn guard(body: impl FnOnce() -> Outcome) -> et_status {
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => Failure { status: et_status::ET_OK, message: String::new() },
        Ok(Err(f)) => f,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Failure { status: et_status::ET_RUNTIME, message: format!("internal error: {what}") }
        }
    };
    set_last_error(failure.message.lines().next().unwrap_or(""));
    failure.status
}

/// Frees a handle made by `Box::into_raw` (NULL does nothing), a panic in a destructor caught.
pub(crate) unsafe fn free_box<T>(handle: *mut T) {
    if !handle.is_null() {
        // SAFETY: the caller passes a pointer this crate returned and has not freed.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(handle) })));
    }
}

/// The message of the last call on this thread that failed, as one line naming the file, node
/// or value at fault; "" when the last call that returns an `et_status` succeeded (the
/// `et_*_free` functions leave it as it was).
///
/// Ownership: the string belongs to the library and stays valid until the next `et_*` call on
/// the same thread (copy it to keep it). Never NULL. Each thread has its own message.
#[no_mangle]
pub extern "C" fn et_last_error() -> *const c_char {
    LAST_ERROR.try_with(|e| e.borrow().as_ptr()).unwrap_or(c"".as_ptr())
}

/// The library's version ("0.1.0"), a static string (never freed).
#[no_mangle]
pub extern "C" fn et_version() -> *const c_char {
    const VERSION: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("the version holds no NUL"),
    };
    VERSION.as_ptr()
}

/// `*p` as a string: an error when `p` is NULL or the bytes are not UTF-8.
pub(crate) unsafe fn c_str<'a>(p: *const c_char, what: &str) -> Outcome<&'a str> {
    if p.is_null() {
        return Err(invalid(format!("{what}: NULL pointer")));
    }
    // SAFETY: the caller passes a NUL-terminated string (header contract).
    let bytes = unsafe { CStr::from_ptr(p) };
    bytes.to_str().map_err(|e| invalid(format!("{what}: not valid UTF-8 ({e})")))
}

/// `*p` as a shared reference: an error when `p` is NULL.
pub(crate) unsafe fn arg_ref<'a, T>(p: *const T, what: &str) -> Outcome<&'a T> {
    // SAFETY: a non-NULL pointer is a live handle or value of type T (header contract).
    unsafe { p.as_ref() }.ok_or_else(|| invalid(format!("{what}: NULL pointer")))
}

/// `*p` as an exclusive reference: an error when `p` is NULL.
pub(crate) unsafe fn arg_mut<'a, T>(p: *mut T, what: &str) -> Outcome<&'a mut T> {
    // SAFETY: as `arg_ref`, and the caller does not use the object from another thread meanwhile.
    unsafe { p.as_mut() }.ok_or_else(|| invalid(format!("{what}: NULL pointer")))
}

/// `len` values at `p` (NULL is allowed only for `len == 0`).
pub(crate) unsafe fn arg_slice<'a, T>(p: *const T, len: usize, what: &str) -> Outcome<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(invalid(format!("{what}: NULL pointer")));
    }
    if len.checked_mul(size_of::<T>()).is_none_or(|b| b > isize::MAX as usize) {
        return Err(invalid(format!("{what}: {len} elements do not fit in memory")));
    }
    // SAFETY: the caller passes `len` readable values (header contract); the size fits.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Clears an output handle slot before the call fills it, so that a failure leaves NULL.
pub(crate) unsafe fn out_slot<'a, T>(out: *mut *mut T, what: &str) -> Outcome<&'a mut *mut T> {
    let slot = unsafe { arg_mut(out, what) }?;
    *slot = std::ptr::null_mut();
    Ok(slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        unsafe { CStr::from_ptr(et_last_error()) }.to_str().unwrap().to_string()
    }

    #[test]
    fn a_panic_becomes_a_runtime_error_with_its_message() {
        let status = guard(|| panic!("boom {}", 42));
        assert_eq!(status, et_status::ET_RUNTIME);
        assert_eq!(last_error(), "internal error: boom 42");
    }

    #[test]
    fn success_clears_the_last_error() {
        assert_eq!(guard(|| Err(invalid("x: NULL pointer"))), et_status::ET_INVALID_ARGUMENT);
        assert_eq!(last_error(), "x: NULL pointer");
        assert_eq!(guard(|| Ok(())), et_status::ET_OK);
        assert_eq!(last_error(), "");
    }

    #[test]
    fn library_errors_map_to_the_command_line_exit_codes() {
        use edgetune::Error;
        // src/cli/mod.rs, exit_code: NonFinite and Runtime 1, Stopped 130, the rest 2.
        let cases = [
            (Error::Runtime("r".into()), et_status::ET_RUNTIME),
            (Error::NonFinite("n".into()), et_status::ET_RUNTIME),
            (Error::Stopped("s".into()), et_status::ET_STOPPED),
            (Error::Config("c".into()), et_status::ET_BAD_INPUT),
            (Error::data("d", "m"), et_status::ET_BAD_INPUT),
        ];
        for (e, want) in cases {
            assert_eq!(Failure::from(e).status as i32, want as i32);
        }
    }

    #[test]
    fn messages_keep_one_line_and_no_nul() {
        guard(|| Err(bad_input("first\nsecond")));
        assert_eq!(last_error(), "first");
        guard(|| Err(bad_input("a\0b")));
        assert_eq!(last_error(), "a\\0b");
    }

    #[test]
    fn strings_must_be_non_null_utf8() {
        let bad = [0xffu8, 0];
        let e = unsafe { c_str(bad.as_ptr().cast(), "path") }.err().unwrap();
        assert_eq!(e.status, et_status::ET_INVALID_ARGUMENT);
        assert!(e.message.starts_with("path: not valid UTF-8"), "{}", e.message);
        let e = unsafe { c_str(std::ptr::null(), "path") }.err().unwrap();
        assert_eq!(e.message, "path: NULL pointer");
    }

    #[test]
    fn slices_too_large_for_memory_are_refused() {
        let p = 8 as *const f32;
        let e = unsafe { arg_slice(p, usize::MAX / 2, "x") }.err().unwrap();
        assert_eq!(e.status, et_status::ET_INVALID_ARGUMENT);
        assert!(unsafe { arg_slice::<f32>(std::ptr::null(), 0, "x") }.unwrap().is_empty());
    }
}
