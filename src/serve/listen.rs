//! Where the service listens: stdio, a Unix socket, TCP, or HTTP on TCP; and who may connect.
//!
//! Trust follows the kind of listener: stdio and a Unix socket (whose file mode and group
//! say who may connect) are trusted with control methods; TCP and HTTP, which anyone who
//! reaches the port can use, are not. Binding TCP or HTTP beyond loopback is the operator's
//! explicit choice ([`ListenAddr::is_exposed`]).

use std::ffi::CString;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

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

impl ListenAddr {
    /// Whether its connections are trusted with control methods (`reload`): stdio and Unix
    /// sockets are; TCP and HTTP are not.
    pub fn is_trusted(&self) -> bool {
        matches!(self, ListenAddr::Stdio | ListenAddr::Unix(_))
    }

    /// Whether it reaches beyond this machine: TCP or HTTP on a host that is not loopback
    /// (127.0.0.0/8, `::1`, `localhost`). A host name other than `localhost` counts as
    /// exposed, whatever it resolves to today.
    pub fn is_exposed(&self) -> bool {
        let (ListenAddr::Tcp(host_port) | ListenAddr::Http(host_port)) = self else {
            return false;
        };
        let host = host_port.rsplit_once(':').map_or("", |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.eq_ignore_ascii_case("localhost") {
            return false;
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => !ip.to_canonical().is_loopback(),
            Err(_) => true,
        }
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

/// Who may connect to a Unix socket: its file's mode and group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SocketAccess {
    /// Permission bits (connecting takes write permission).
    pub mode: u32,
    /// The group to give the socket file, if not the process's.
    pub group: Option<u32>,
}

impl Listener {
    /// Binds `addr`. A stale Unix socket file (nothing listening on it) is replaced; a live
    /// one, or a file that is not a socket, is an error. A Unix socket gets `access`.
    pub fn bind(addr: &ListenAddr, access: SocketAccess) -> io::Result<Listener> {
        match addr {
            ListenAddr::Stdio => Ok(Listener::Stdio),
            ListenAddr::Unix(path) => bind_unix(path, access).map(Listener::Unix),
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

fn bind_unix(path: &Path, access: SocketAccess) -> io::Result<UnixSocket> {
    // Clients connect by path, which a socket address limits; so does the live-server check
    // below, which would take a live socket at a longer path for a stale one.
    if path.as_os_str().len() >= MAX_SOCKET_PATH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: a socket path must be shorter than {MAX_SOCKET_PATH} bytes",
                path.display()
            ),
        ));
    }
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
    let listener = bind_with_access(path, access)
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

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes, NUL included).
const MAX_SOCKET_PATH: usize = 108;

/// Binds a socket at `path` that has `access` from its first moment: it is bound in a
/// private directory beside `path` (mode 0700, so nobody else can reach it there), given its
/// mode and group, then renamed into place. A connection follows the file's inode, so the
/// listener keeps working under its new name.
fn bind_with_access(path: &Path, access: SocketAccess) -> io::Result<UnixListener> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    static STAGINGS: AtomicU64 = AtomicU64::new(0);
    let staging = parent.join(format!(
        ".authhost-{}-{}",
        std::process::id(),
        STAGINGS.fetch_add(1, Ordering::Relaxed)
    ));
    let staged = staging.join("s");
    // Left behind only by a process that died binding, with this same pid: not in use.
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&staging);
    std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    let bound = (|| {
        // A socket address holds at most 107 bytes, and the staging path is longer than the
        // final one: past that, bind through the directory's descriptor instead
        // (/proc/self/fd/N/s names the same place in a few bytes).
        let directory = std::fs::File::open(&staging)?;
        let short = PathBuf::from(format!("/proc/self/fd/{}/s", directory.as_raw_fd()));
        let bind_at = if staged.as_os_str().len() < MAX_SOCKET_PATH {
            &staged
        } else {
            &short
        };
        let listener = UnixListener::bind(bind_at)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(access.mode))?;
        if let Some(gid) = access.group {
            std::os::unix::fs::chown(&staged, None, Some(gid))?;
        }
        std::fs::rename(&staged, path)?;
        Ok(listener)
    })();
    if bound.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    let _ = std::fs::remove_dir(&staging);
    bound
}

/// The group id of `group`: a group name, or a number.
///
/// # Failure
///
/// No such group in the system's group database (`getgrnam`).
pub fn group_id(group: &str) -> io::Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let unknown = || io::Error::new(io::ErrorKind::NotFound, format!("no group named {group:?}"));
    let name = CString::new(group).map_err(|_| unknown())?;
    let mut buffer = vec![0 as libc::c_char; 16 << 10];
    loop {
        // SAFETY: all-zero bytes are a valid `group` (null pointers, zero id); getgrnam_r
        // fills it in.
        let mut entry: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: `name` is a NUL-terminated string, `entry` and `found` are valid for
        // writes, and `buffer` is writable for the length given; the strings getgrnam_r
        // points `entry` at live in `buffer`, which is not read here.
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buffer.len() < 1 << 24 {
            buffer.resize(buffer.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if found.is_null() {
            return Err(unknown());
        }
        return Ok(entry.gr_gid);
    }
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

    const OWNER_ONLY: SocketAccess = SocketAccess {
        mode: 0o600,
        group: None,
    };

    #[test]
    fn only_tcp_or_http_beyond_loopback_is_exposed_and_only_they_are_untrusted() {
        for (text, exposed) in [
            ("stdio", false),
            ("unix:/tmp/a.sock", false),
            ("tcp:127.0.0.1:0", false),
            ("tcp:127.3.2.1:7000", false),
            ("tcp:localhost:7000", false),
            ("tcp:LOCALHOST:7000", false),
            ("tcp:[::1]:7000", false),
            ("tcp:[::ffff:127.0.0.1]:7000", false),
            ("tcp:0.0.0.0:7000", true),
            ("tcp:[::]:7000", true),
            ("tcp:10.1.2.3:7000", true),
            ("tcp:db.example.org:7000", true),
            ("http:127.0.0.1:0", false),
            ("http:localhost:8080", false),
            ("http:[::1]:8080", false),
            ("http:0.0.0.0:8080", true),
            ("http:192.0.2.1:8080", true),
        ] {
            let addr: ListenAddr = text.parse().unwrap();
            assert_eq!(addr.is_exposed(), exposed, "{text}");
            let network = text.starts_with("tcp:") || text.starts_with("http:");
            assert_eq!(addr.is_trusted(), !network, "{text}");
        }
    }

    #[test]
    fn groups_are_found_by_name_or_number() {
        assert_eq!(group_id("root").unwrap(), 0);
        assert_eq!(group_id("4242").unwrap(), 4242);
        let e = group_id("no-such-group-authhost").unwrap_err();
        assert!(e.to_string().contains("no-such-group-authhost"), "{e}");
        assert!(group_id("nul\0byte").is_err());
    }

    #[test]
    fn a_socket_has_its_mode_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let socket = bind_unix(
            &path,
            SocketAccess {
                mode: 0o640,
                group: None,
            },
        )
        .unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o640);
        UnixStream::connect(&path).expect("the renamed socket still accepts");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no staging directory is left behind");
        drop(socket);
    }

    #[test]
    fn a_socket_whose_staging_path_is_too_long_to_bind_is_bound_all_the_same() {
        let dir = tempfile::tempdir().unwrap();
        // The final path fits in a socket address (107 bytes); the staging one would not.
        let mut deep = dir.path().to_path_buf();
        while deep.as_os_str().len() < 95 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join("s.sock");
        assert!(path.as_os_str().len() < MAX_SOCKET_PATH);
        let socket = bind_unix(&path, OWNER_ONLY).expect("binds through /proc/self/fd");
        assert_eq!(
            std::fs::symlink_metadata(&path).unwrap().mode() & 0o777,
            0o600
        );
        UnixStream::connect(&path).expect("accepts at its final path");
        drop(socket);
        assert!(!path.exists());
        let too_long = deep.join("a-socket-name-past-the-limit.sock");
        let e = bind_unix(&too_long, OWNER_ONLY).err().expect("too long");
        assert!(e.to_string().contains("shorter than 108"), "{e}");
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale); // the file stays, nothing listens
        let live = bind_unix(&path, OWNER_ONLY).expect("replaces the stale socket");
        let e = bind_unix(&path, OWNER_ONLY)
            .err()
            .expect("a live socket is not replaced");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        drop(live);
        assert!(!path.exists(), "the socket file is removed on drop");
        std::fs::write(&path, "data").unwrap();
        let e = bind_unix(&path, OWNER_ONLY)
            .err()
            .expect("a regular file is not replaced");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    }
}
