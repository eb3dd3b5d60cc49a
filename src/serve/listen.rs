//! Where the service listens: stdio, a Unix socket, TCP, or HTTP on TCP.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A listen address: `stdio`, `unix:PATH`, `tcp:HOST:PORT` or `http:HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// Requests on standard input, answers on standard output.
    Stdio,
    /// A Unix socket at this path.
    Unix(PathBuf),
    /// TCP on `HOST:PORT` (port 0: any free port).
    Tcp(String),
    /// The HTTP front on TCP `HOST:PORT` (port 0: any free port); needs the `http` feature.
    Http(String),
}

/// A listen address that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid listen address {given:?}: {reason} (expected stdio, unix:PATH, tcp:HOST:PORT or http:HOST:PORT)")]
pub struct ListenAddrError {
    given: String,
    reason: &'static str,
}

impl FromStr for ListenAddr {
    type Err = ListenAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = |reason| ListenAddrError {
            given: s.to_string(),
            reason,
        };
        if s == "stdio" {
            return Ok(ListenAddr::Stdio);
        }
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(error("the socket path is empty"));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        type Kind = fn(String) -> ListenAddr;
        let kinds: [(&str, Kind); 2] = [("tcp:", ListenAddr::Tcp), ("http:", ListenAddr::Http)];
        for (prefix, kind) in kinds {
            let Some(host_port) = s.strip_prefix(prefix) else {
                continue;
            };
            let Some((host, port)) = host_port.rsplit_once(':') else {
                return Err(error("no port"));
            };
            if host.is_empty() {
                return Err(error("no host"));
            }
            if port.parse::<u16>().is_err() {
                return Err(error("the port is not a number from 0 to 65535"));
            }
            return Ok(kind(host_port.to_string()));
        }
        Err(error("unknown kind"))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Stdio => f.write_str("stdio"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            ListenAddr::Tcp(host_port) => write!(f, "tcp:{host_port}"),
            ListenAddr::Http(host_port) => write!(f, "http:{host_port}"),
        }
    }
}

/// A bound listener.
pub(crate) enum Listener {
    Stdio,
    Unix(UnixSocket),
    Tcp(TcpListener),
    /// The HTTP front's socket; served by `super::http`.
    Http(TcpListener),
}

/// A Unix listener that removes its socket file when dropped, if the file is still its own.
pub(crate) struct UnixSocket {
    pub listener: UnixListener,
    pub path: PathBuf,
    /// Device and inode of the socket file this listener made.
    identity: Option<(u64, u64)>,
}

impl UnixSocket {
    /// Removes the socket file if it is still the one this listener made (not a newer
    /// server's). Idempotent.
    pub fn remove_file(&self) {
        let still_ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| Some((m.dev(), m.ino())) == self.identity);
        if still_ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                log::warn!("cannot remove the socket {}: {e}", self.path.display());
            }
        }
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        self.remove_file();
    }
}

impl Listener {
    /// Binds `addr`. A stale Unix socket file (nothing listening on it) is replaced; a live
    /// one, or a file that is not a socket, is an error.
    pub fn bind(addr: &ListenAddr) -> io::Result<Listener> {
        match addr {
            ListenAddr::Stdio => Ok(Listener::Stdio),
            ListenAddr::Unix(path) => bind_unix(path).map(Listener::Unix),
            ListenAddr::Tcp(host_port) => TcpListener::bind(host_port.as_str()).map(Listener::Tcp),
            ListenAddr::Http(host_port) if cfg!(feature = "http") => {
                TcpListener::bind(host_port.as_str()).map(Listener::Http)
            }
            ListenAddr::Http(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this authhost was built without the `http` feature: no HTTP front",
            )),
        }
    }

    /// The address actually bound (the real port for `tcp:HOST:0`).
    pub fn local_addr(&self) -> ListenAddr {
        match self {
            Listener::Stdio => ListenAddr::Stdio,
            Listener::Unix(socket) => ListenAddr::Unix(socket.path.clone()),
            Listener::Tcp(listener) => match listener.local_addr() {
                Ok(addr) => ListenAddr::Tcp(addr.to_string()),
                Err(_) => ListenAddr::Tcp("?".into()),
            },
            Listener::Http(listener) => match listener.local_addr() {
                Ok(addr) => ListenAddr::Http(addr.to_string()),
                Err(_) => ListenAddr::Http("?".into()),
            },
        }
    }

    /// Makes a blocked `accept` return, by connecting to the listener.
    pub fn wake(&self) {
        match self {
            Listener::Stdio => {}
            Listener::Unix(socket) => {
                let _ = UnixStream::connect(&socket.path);
            }
            // The HTTP front stops through its own signal, not a blocked accept.
            Listener::Http(_) => {}
            Listener::Tcp(listener) => {
                if let Ok(mut addr) = listener.local_addr() {
                    if addr.ip().is_unspecified() {
                        let loopback: SocketAddr = if addr.is_ipv4() {
                            ([127, 0, 0, 1], addr.port()).into()
                        } else {
                            (std::net::Ipv6Addr::LOCALHOST, addr.port()).into()
                        };
                        addr = loopback;
                    }
                    let _ = TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1));
                }
            }
        }
    }
}

fn bind_unix(path: &Path) -> io::Result<UnixSocket> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{}: another server is listening on this socket",
                        path.display()
                    ),
                ));
            }
            log::info!("replacing the stale socket {}", path.display());
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{}: exists and is not a socket; not replacing it",
                    path.display()
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let identity = std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    Ok(UnixSocket {
        listener,
        path: path.to_path_buf(),
        identity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print_back() {
        for text in [
            "stdio",
            "unix:/tmp/a.sock",
            "tcp:127.0.0.1:0",
            "tcp:[::1]:7000",
            "http:127.0.0.1:8080",
        ] {
            let addr: ListenAddr = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
        }
        assert_eq!("unix:rel/s".parse(), Ok(ListenAddr::Unix("rel/s".into())));
        for bad in [
            "",
            "std",
            "unix:",
            "tcp:localhost",
            "tcp::80",
            "tcp:h:99999",
            "udp:h:1",
            "http:localhost",
            "http::80",
        ] {
            let e = bad.parse::<ListenAddr>().unwrap_err();
            assert!(e.to_string().contains("expected stdio"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale); // the file stays, nothing listens
        let live = bind_unix(&path).expect("replaces the stale socket");
        let e = bind_unix(&path)
            .err()
            .expect("a live socket is not replaced");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        drop(live);
        assert!(!path.exists(), "the socket file is removed on drop");
        std::fs::write(&path, "data").unwrap();
        let e = bind_unix(&path)
            .err()
            .expect("a regular file is not replaced");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    }
}
