//! The HTTP front's status page (`GET /`) as a person sees it: rendered by headless Chromium
//! (Debian's), whose DOM must show the live generation, each plugin with its language and
//! callbacks, and, after a broken save of a plugin file, the load error in full.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::http_programs::{http_service, program, status_of, wait_until, Service, PATIENCE};

#[test]
fn the_status_page_shows_the_generation_the_plugins_and_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for file in ["users.lua", "nodes.py"] {
        let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policies/http/page");
        std::fs::copy(page.join(file), plugins.join(file)).unwrap();
    }
    let service = http_service(&plugins, &[]);
    let generation = status_of(&service)["generation"].as_u64().unwrap();

    let page = render(&service, dir.path());
    assert_eq!(generation_shown(&page), Some(generation), "{page}");
    let users = plugin_row(&page, "users.lua");
    assert!(users.contains("lua"), "{users:?} in {page}");
    assert!(users.contains("on_user_login"), "{users:?} in {page}");
    assert!(users.contains("on_user_signup"), "{users:?} in {page}");
    let nodes = plugin_row(&page, "nodes.py");
    assert!(nodes.contains("python"), "{nodes:?} in {page}");
    assert!(nodes.contains("on_new_node"), "{nodes:?} in {page}");
    assert!(!nodes.contains("on_user_login"), "{nodes:?} in {page}");
    assert!(status_of(&service)["last_error"].is_null());

    // An editor saves a broken users.lua, and the operator reloads (SIGHUP): the set stays,
    // and the page says why.
    std::fs::write(
        plugins.join("users.lua"),
        "function on_user_login(login_info, node_info)\n  return 1 +\nend\n",
    )
    .unwrap();
    service.signal(libc::SIGHUP);
    wait_until("the failed reload to show in /status", || {
        status_of(&service)["last_error"].is_string()
    });
    let status = status_of(&service);
    let error = status["last_error"].as_str().unwrap();
    assert!(error.contains("users.lua:3"), "{error}");
    let page = render(&service, dir.path());
    assert!(
        page.contains(error),
        "the load error {error:?} is not on the page in full: {page}"
    );
    // The running set is still the one shown.
    assert_eq!(generation_shown(&page), Some(generation), "{page}");
    assert!(
        plugin_row(&page, "nodes.py").contains("on_new_node"),
        "{page}"
    );
}

/// What the page says right after the plugin file `name` (its row: the language and the
/// callbacks), up to the next plugin's path and at most 100 characters.
fn plugin_row<'a>(page: &'a str, name: &str) -> &'a str {
    let at = page
        .find(&format!("/{name}"))
        .unwrap_or_else(|| panic!("{name} is not on the page: {page}"))
        + name.len()
        + 1;
    let rest = &page[at..];
    let end = rest.find("/plugins/").unwrap_or(rest.len());
    let end = (0..=end.min(100))
        .rev()
        .find(|&i| rest.is_char_boundary(i))
        .unwrap_or(0);
    &rest[..end]
}

/// The text of `GET /` as headless Chromium rendered it (`--dump-dom`), tags dropped and
/// entities decoded.
fn render(service: &Service, scratch: &Path) -> String {
    let chromium = program("/usr/bin/chromium");
    let profile = tempfile::tempdir_in(scratch).unwrap();
    // --no-sandbox: Chromium's sandbox refuses to run as root, as the tests may.
    let child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("{}/", service.http()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    let pid = child.id();
    // A watchdog rather than a timed assertion: only a Chromium that hangs is stopped.
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if finished.recv_timeout(PATIENCE).is_err() {
            // SAFETY: kill(2) takes plain integers; the pid is our own child's.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    });
    let output = child.wait_with_output().expect("waiting for chromium");
    let _ = done.send(());
    assert!(
        output.status.success(),
        "chromium --dump-dom failed ({})",
        output.status
    );
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(dom.contains("<html"), "chromium printed no DOM: {dom}");
    text_of(&dom)
}

/// The text of an HTML document: tags replaced by spaces, entities decoded.
fn text_of(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

/// The number that follows the word "generation" on the page.
fn generation_shown(text: &str) -> Option<u64> {
    let at = text.to_ascii_lowercase().find("generation")? + "generation".len();
    let digits: String = text[at..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
