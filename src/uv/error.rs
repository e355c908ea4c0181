//! libuv error codes as a Rust error type.

use std::ffi::CStr;
use std::fmt;

use libuv_sys2 as sys;

/// An error reported by libuv: a negative `uv_errno_t` plus what we were doing when it happened.
///
/// `Display` reads like "bind 127.0.0.1:1337: address already in use (EADDRINUSE)", so the
/// message can be shown to a user as it is.
#[derive(Clone, PartialEq, Eq)]
pub struct UvError {
    code: i32,
    context: String,
}

impl UvError {
    /// Wraps a libuv status code (negative) without context.
    pub fn from_code(code: i32) -> Self {
        UvError {
            code,
            context: String::new(),
        }
    }

    /// Wraps a libuv status code with a description of the operation that failed.
    pub fn with_context(code: i32, context: impl Into<String>) -> Self {
        UvError {
            code,
            context: context.into(),
        }
    }

    /// Returns the same error with `context` in front of the existing one.
    pub fn context(mut self, context: impl Into<String>) -> Self {
        let outer = context.into();
        self.context = if self.context.is_empty() {
            outer
        } else {
            format!("{outer}: {}", self.context)
        };
        self
    }

    /// The raw (negative) libuv error code.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// libuv's symbolic name, e.g. `"EADDRINUSE"`.
    pub fn name(&self) -> &'static str {
        // SAFETY: uv_err_name returns a pointer to a static NUL-terminated string for any code
        // (unknown codes leak a small allocation inside libuv, which is acceptable for errors).
        unsafe { static_cstr(sys::uv_err_name(self.code)) }
    }

    /// libuv's human-readable description, e.g. `"address already in use"`.
    pub fn description(&self) -> &'static str {
        // SAFETY: as for uv_err_name, uv_strerror returns a static NUL-terminated string.
        unsafe { static_cstr(sys::uv_strerror(self.code)) }
    }

    /// True for the end-of-file condition on a stream.
    pub fn is_eof(&self) -> bool {
        self.code == sys::uv_errno_t_UV_EOF
    }

    /// True when the operation was cancelled because its handle was closed.
    pub fn is_canceled(&self) -> bool {
        self.code == sys::uv_errno_t_UV_ECANCELED
    }

    /// True for "address already in use".
    pub fn is_addr_in_use(&self) -> bool {
        self.code == sys::uv_errno_t_UV_EADDRINUSE
    }
}

/// # Safety
/// `p` must be null or point to a NUL-terminated string that lives for the whole program.
unsafe fn static_cstr(p: *const std::ffi::c_char) -> &'static str {
    if p.is_null() {
        return "unknown error";
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .unwrap_or("unknown error")
}

impl fmt::Display for UvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.context.is_empty() {
            write!(f, "{}: ", self.context)?;
        }
        write!(f, "{} ({})", self.description(), self.name())
    }
}

impl fmt::Debug for UvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UvError({self})")
    }
}

impl std::error::Error for UvError {}

impl From<UvError> for std::io::Error {
    fn from(e: UvError) -> Self {
        std::io::Error::other(e)
    }
}

/// Turns a libuv return value into a `Result`: negative values are errors.
pub(crate) fn check(rc: i32, context: impl FnOnce() -> String) -> Result<i32, UvError> {
    if rc < 0 {
        Err(UvError::with_context(rc, context()))
    } else {
        Ok(rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_reason() {
        let e = UvError::with_context(sys::uv_errno_t_UV_EADDRINUSE, "bind 127.0.0.1:1337");
        assert_eq!(
            e.to_string(),
            "bind 127.0.0.1:1337: address already in use (EADDRINUSE)"
        );
        assert!(e.is_addr_in_use());
        let e = UvError::from_code(sys::uv_errno_t_UV_EOF).context("read");
        assert_eq!(e.to_string(), "read: end of file (EOF)");
        assert!(e.is_eof());
    }
}
