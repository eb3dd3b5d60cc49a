//! Every row of the decision tables (contract §2), through a real Lua interpreter.

use crate::common;

use authhost::{ErrorKind, NodeDecision, UserDecision};
use common::{error_of, host};

#[test]
fn user_callbacks_map_every_row() {
    let host = host("lua/returns.lua");
    let accepted = [
        ("int42", UserDecision::UserId(42)),
        ("one", UserDecision::UserId(1)),
        ("maxint", UserDecision::UserId(i64::MAX)),
        ("float42", UserDecision::UserId(42)),
        ("zero", UserDecision::NewUser),
        ("minus1", UserDecision::NotAuthorized),
        ("float_minus1", UserDecision::NotAuthorized),
        ("multi_int_first", UserDecision::UserId(7)),
    ];
    for (which, expected) in accepted {
        for outcome in [host.user_login(which, "{}"), host.user_signup(which, "{}")] {
            assert_eq!(outcome.user(), Some(&expected), "{which}: {outcome:?}");
        }
    }
}

#[test]
fn minus_three_is_the_scripts_own_error() {
    let host = host("lua/returns.lua");
    let error = error_of(&host.user_login("minus3", "{}"));
    assert_eq!(error.kind, ErrorKind::Script);
    assert_eq!(host.user_login("minus3", "{}").decision.code_json(), -3);
}

#[test]
fn anything_else_is_an_error_that_says_what_came_back() {
    let host = host("lua/returns.lua");
    let rejected = [
        ("minus2", "the integer -2"),
        ("minus4", "the integer -4"),
        ("mininteger", "the integer -9223372036854775808"),
        ("float_half", "a float 1.5"),
        ("nan", "NaN"),
        ("huge", "a float inf"),
        ("neg_huge", "a float -inf"),
        ("two_pow_63", "a float 9.223372036854776e18"),
        ("string42", "a string \"42\""),
        ("truth", "a boolean true"),
        ("falsity", "a boolean false"),
        ("nothing", "returned nil"),
        ("no_value", "returned nil"),
        ("table", "type table"),
        ("func", "type function"),
        ("multi_string_first", "a string \"7\""),
        ("primary", "a string \"primary\""),
    ];
    for (which, says) in rejected {
        let outcome = host.user_login(which, "{}");
        let error = error_of(&outcome);
        assert_eq!(error.kind, ErrorKind::BadReturn, "{which}");
        assert!(error.message.contains(says), "{which}: {}", error.message);
        assert!(
            error.message.contains("expected an integer user id"),
            "{}",
            error.message
        );
        assert_eq!(outcome.to_json()["code"], -3);
    }
}

#[test]
fn node_callback_maps_every_row() {
    let host = host("lua/returns.lua");
    let accepted = [
        ("primary", NodeDecision::Primary),
        ("secondary", NodeDecision::Secondary),
        ("async", NodeDecision::Async),
        ("unauthorized", NodeDecision::Unauthorized),
        ("minus1", NodeDecision::Unauthorized),
        ("float_minus1", NodeDecision::Unauthorized),
    ];
    for (which, expected) in accepted {
        let outcome = host.new_node(which);
        assert_eq!(outcome.node(), Some(&expected), "{which}");
    }
    assert_eq!(host.new_node("primary").to_json()["code"], "primary");
    assert_eq!(host.new_node("unauthorized").to_json()["code"], -1);
    assert_eq!(error_of(&host.new_node("minus3")).kind, ErrorKind::Script);
    for which in [
        "Primary", "admin", "nothing", "int42", "zero", "minus2", "truth", "table", "string42",
    ] {
        let error = error_of(&host.new_node(which));
        assert_eq!(error.kind, ErrorKind::BadReturn, "{which}");
        assert!(
            error.message.contains("expected \"primary\""),
            "{}",
            error.message
        );
    }
}

#[test]
fn a_decision_names_its_plugin_and_generation() {
    let host = host("lua/returns.lua");
    let json = host.user_login("int42", "{}").to_json();
    assert_eq!(json["decision"], "user_id");
    assert_eq!(json["code"], 42);
    assert!(json["plugin"]
        .as_str()
        .unwrap()
        .ends_with("tests/policies/lua/returns.lua"));
    assert_eq!(json["generation"], 1);
    assert!(json["elapsed_us"].is_u64());
}
