//! Running code inside a network namespace, for sockets that must live there (netlink
//! sockets, listeners): a socket keeps the namespace it was made in.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use crate::{Error, Result};

/// Run `f` in the network namespace at `netns` (`/run/netns/NAME`), or here if `None`.
/// `f` runs on a short-lived thread that entered the namespace, so no other thread
/// changes namespace. `what` names the work in errors.
pub(crate) fn within<T: Send>(
    netns: Option<&Path>,
    what: &str,
    f: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    let Some(path) = netns else {
        return f();
    };
    let file = File::open(path)
        .map_err(|e| Error::io(format!("opening network namespace {}", path.display()), e))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            rustix::thread::move_into_link_name_space(
                file.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| {
                Error::io(
                    format!("entering network namespace {}", path.display()),
                    e.into(),
                )
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Unsupported(format!("the thread {what} panicked"))))
    })
}
