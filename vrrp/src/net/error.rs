//! rtnetlink errors as `io::Error`, so that callers see the kernel's errno (EEXIST, ENODEV, ...)
//! as they would from iproute2.

use std::io;

/// The kernel's errno when the kernel refused the request, otherwise the library's error.
pub(super) fn to_io(error: rtnetlink::Error) -> io::Error {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.to_io(),
        other => io::Error::other(other),
    }
}

/// Whether `error` carries the errno `code`.
pub(super) fn is_errno(error: &io::Error, code: i32) -> bool {
    error.raw_os_error() == Some(code)
}

/// The error of an interface that does not exist, naming it (the kernel's ENODEV does not).
pub(super) fn no_such_interface(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("network interface {name:?} not found"),
    )
}
