//! Hot reload with Python policies (contract §4): a changed helper module takes effect, a
//! Python plugin added beside a Lua one goes live, a broken Python save keeps the old set.
//! The Lua side and the mechanics are in `tests/it/reload.rs`.

use crate::reload_support;

use authhost::{ErrorKind, Language, NodeDecision};
use reload_support::*;

const LOGIN: &str = r#"{"name":"alice"}"#;
const NODE: &str = r#"{"public_key":"k","address":"10.0.0.7"}"#;

#[test]
fn a_changed_helper_module_takes_effect() {
    let plugins = PluginDir::new();
    plugins.install("py_login.py", "login.py");
    plugins.install("_ids_v1.py", "_ids.py");
    let host = watching_host(plugins.path());
    assert_eq!(user_id(&host.user_login(LOGIN, NODE)), Ok(404));

    // `_ids.py` is no plugin, but a change to it reloads the set, and the plugin's
    // `import _ids` reads it afresh (same size, same second: no stale bytecode either).
    plugins.install("_ids_v2.py", "_ids.py");
    wait_for_login(&host, 505, &[404]);
    plugins.install("_ids_v1.py", "_ids.py");
    wait_for_login(&host, 404, &[505]);

    // The same through `Host::reload`, with no watcher in the way.
    host.stop_watching();
    plugins.install("_ids_v2.py", "_ids.py");
    host.reload().expect("version 2 of the helper loads");
    assert_eq!(user_id(&host.user_login(LOGIN, NODE)), Ok(505));
}

#[test]
fn a_changed_module_in_a_helper_package_takes_effect() {
    let plugins = PluginDir::new();
    plugins.install("py_pkg_login.py", "login.py");
    plugins.make_dir("ids");
    plugins.install("pkg_init.py", "ids/__init__.py");
    plugins.install("pkg_ids_v1.py", "ids/values.py");
    let host = watching_host(plugins.path());
    assert_eq!(user_id(&host.user_login(LOGIN, NODE)), Ok(404));

    // A module of a package in a subdirectory is watched like a helper beside the plugins.
    plugins.install("pkg_ids_v2.py", "ids/values.py");
    wait_for_login(&host, 505, &[404]);

    // The package replaced as a whole: its new directory is watched too. (While it is
    // gone, the import fails and the running set stays.)
    std::fs::remove_dir_all(plugins.file("ids")).unwrap();
    plugins.make_dir("ids");
    plugins.install("pkg_init.py", "ids/__init__.py");
    plugins.install("pkg_ids_v1.py", "ids/values.py");
    wait_for_login(&host, 404, &[505]);
    plugins.install("pkg_ids_v2.py", "ids/values.py");
    wait_for_login(&host, 505, &[404]);
}

#[test]
fn a_python_plugin_added_beside_a_lua_one_goes_live() {
    let plugins = PluginDir::new();
    plugins.install("login_v1.lua", "login.lua");
    let host = watching_host(plugins.path());
    assert_eq!(
        host.new_node(NODE).decision.error_cause().map(|e| e.kind),
        Some(ErrorKind::MissingCallback)
    );

    plugins.install("py_nodes.py", "nodes.py");
    let role = role_once_answered(&host, NODE);
    assert_eq!(role, Some(NodeDecision::Primary));
    // The Lua plugin still answers, from the same set.
    assert_eq!(user_id(&host.user_login(LOGIN, NODE)), Ok(101));
    let languages: Vec<Language> = host.status().plugins.iter().map(|p| p.language).collect();
    assert_eq!(languages, [Language::Lua, Language::Python]);

    // And deleting it takes its callback away again.
    plugins.remove("nodes.py");
    let gone = eventually(|| {
        let outcome = host.new_node(NODE);
        outcome
            .decision
            .error_cause()
            .filter(|e| e.kind == ErrorKind::MissingCallback)
            .map(|e| e.message.clone())
    });
    assert_eq!(gone.as_deref(), Some("no plugin defines on_new_node"));
}

#[test]
fn a_broken_python_save_keeps_the_old_set() {
    let plugins = PluginDir::new();
    plugins.install("py_nodes.py", "nodes.py");
    let host = watching_host(plugins.path());
    assert_eq!(host.new_node(NODE).node(), Some(&NodeDecision::Primary));

    plugins.install("py_broken.py", "nodes.py");
    let error = eventually(|| host.status().last_error).expect("the broken save shows in status");
    let file = plugins.file("nodes.py").display().to_string();
    assert!(
        error.starts_with(&format!("{file}:3: ")),
        "the error names file and line 3: {error}"
    );
    assert_eq!(host.status().generation, 1);
    assert_eq!(host.new_node(NODE).node(), Some(&NodeDecision::Primary));

    plugins.install("py_nodes.py", "nodes.py");
    let fixed = eventually(|| host.status().last_error.is_none().then_some(()));
    assert!(fixed.is_some(), "a later good load clears last_error");
    assert_eq!(host.new_node(NODE).node(), Some(&NodeDecision::Primary));
}
