//! Plugin isolation (contract §5, issue 12): a hostile Lua plugin tries every route to change
//! what another plugin of the same interpreter sees (its globals, `_G`, `load`, each library
//! table, the string metatable, `authhost`'s tables), at load and on every request, before
//! and after a reload; the innocent plugin's decision never changes.

use authhost::{Host, NodeDecision, UserDecision};

use crate::common::builder;

fn host() -> Host {
    // One worker: both plugins share one interpreter, the case an attack needs.
    builder("isolation")
        .workers(1)
        .build()
        .expect("the isolation set loads")
}

fn assert_untouched(host: &Host) {
    let outcome = host.new_node(r#"{"public_key":"k"}"#);
    assert_eq!(
        outcome.node(),
        Some(&NodeDecision::Unauthorized),
        "the victim saw the tamperer's writes: {outcome:?}"
    );
}

#[test]
fn a_plugin_cannot_change_what_another_plugin_sees() {
    let host = host();
    assert_untouched(&host);
    for _ in 0..3 {
        // The attacks ran, and took effect in the tamperer's own view…
        assert_eq!(
            host.user_login("{}", "{}").user(),
            Some(&UserDecision::UserId(1))
        );
        // …and nowhere else.
        assert_untouched(&host);
    }
    host.reload().expect("the set reloads");
    assert_untouched(&host);
    host.user_login("{}", "{}");
    assert_untouched(&host);
}

#[test]
fn the_string_metatable_cannot_be_had() {
    let host = host();
    assert_eq!(
        host.user_signup("{}", "{}").user(),
        Some(&UserDecision::NotAuthorized)
    );
}
