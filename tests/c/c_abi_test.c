/*
 * Drives authhost's C ABI the way a C database node would: opens a host on
 * tests/policies/embed/node.lua, asks all three callbacks blocking and asynchronously from
 * several threads, checks every decision, and feeds the boundary bad input (NULL pointers,
 * invalid UTF-8, malformed configuration). Prints "ALL OK" and exits 0 when every check
 * passes; otherwise names the failed check and exits 1.
 *
 * Usage: c_abi_test POLICY_FILE
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

#include "authhost.h"

static atomic_int failures;

#define CHECK(cond, ...)                                        \
    do {                                                        \
        if (!(cond)) {                                          \
            fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                       \
            fprintf(stderr, "\n");                              \
            atomic_fetch_add(&failures, 1);                     \
        }                                                       \
    } while (0)

static const char *PRIMARY = "{\"public_key\":\"pk-primary\"}";
static const char *SECONDARY = "{\"public_key\":\"pk-secondary\"}";
static const char *STRANGER = "{\"public_key\":\"pk-stranger\"}";
static const char *INVALID_UTF8 = "{\"name\":\"\xff\xfe\"}";

static AuthhostHost *host;

/* One login and what it must answer. */
struct expected_login {
    const char *login;
    const char *node;
    int64_t code;
};

static const struct expected_login LOGINS[] = {
    {"{\"name\":\"alice\"}", "{\"public_key\":\"pk-primary\"}", 1},
    {"{\"name\":\"bob\"}", "{\"public_key\":\"pk-async\"}", 2},
    {"{\"name\":\"mallory\"}", "{\"public_key\":\"pk-primary\"}", -1},
    {"{\"name\":\"alice\"}", "{\"public_key\":\"pk-stranger\"}", -1},
    {"{\"name\":\"newcomer\"}", "{\"public_key\":\"pk-primary\"}", 0},
    {"not json", "{}", -3},
};
#define N_LOGINS (sizeof LOGINS / sizeof LOGINS[0])

/* Asynchronous requests still waiting for their callback, and how many were right. */
static atomic_int pending;
static atomic_int async_right;

struct user_expectation {
    int64_t code;
};

static void user_done(void *user_data, int64_t code, const char *decision_json) {
    struct user_expectation *expected = user_data;
    CHECK(code == expected->code, "async user callback: got %lld, expected %lld (%s)",
          (long long)code, (long long)expected->code, decision_json);
    CHECK(decision_json != NULL && strstr(decision_json, "\"code\":") != NULL,
          "async decision JSON: %s", decision_json ? decision_json : "(null)");
    if (code == expected->code) atomic_fetch_add(&async_right, 1);
    free(expected);
    atomic_fetch_sub(&pending, 1);
}

static void node_done(void *user_data, AuthhostNode node, const char *decision_json) {
    AuthhostNode *expected = user_data;
    CHECK(node == *expected, "async node callback: got %d, expected %d (%s)", (int)node,
          (int)*expected, decision_json);
    if (node == *expected) atomic_fetch_add(&async_right, 1);
    free(expected);
    atomic_fetch_sub(&pending, 1);
}

#define ROUNDS 25

/* Each thread asks every login blocking and asynchronously, signs up and asks for nodes. */
static void *caller(void *arg) {
    (void)arg;
    for (int round = 0; round < ROUNDS; round++) {
        for (size_t i = 0; i < N_LOGINS; i++) {
            int64_t code = authhost_user_login(host, LOGINS[i].login, LOGINS[i].node, NULL);
            CHECK(code == LOGINS[i].code, "login %s from %s: got %lld, expected %lld",
                  LOGINS[i].login, LOGINS[i].node, (long long)code, (long long)LOGINS[i].code);

            struct user_expectation *expected = malloc(sizeof *expected);
            expected->code = LOGINS[i].code;
            atomic_fetch_add(&pending, 1);
            AuthhostResult r = authhost_user_login_async(host, LOGINS[i].login, LOGINS[i].node,
                                                         user_done, expected);
            CHECK(r == AUTHHOST_RESULT_OK, "user_login_async returned %d", (int)r);
        }
        int64_t code = authhost_user_signup(host, "{\"name\":\"carol\"}", PRIMARY, NULL);
        CHECK(code == 0, "signup carol: got %lld", (long long)code);
        code = authhost_user_signup(host, "{\"name\":\"bob\"}", PRIMARY, NULL);
        CHECK(code == -1, "signup bob (taken): got %lld", (long long)code);

        struct user_expectation *signup = malloc(sizeof *signup);
        signup->code = 77;
        atomic_fetch_add(&pending, 1);
        CHECK(authhost_user_signup_async(host, "{\"name\":\"dora\",\"wants_id\":77}", PRIMARY,
                                         user_done, signup) == AUTHHOST_RESULT_OK,
              "user_signup_async");

        CHECK(authhost_new_node(host, PRIMARY, NULL) == AUTHHOST_NODE_PRIMARY, "new_node primary");
        CHECK(authhost_new_node(host, SECONDARY, NULL) == AUTHHOST_NODE_SECONDARY,
              "new_node secondary");
        CHECK(authhost_new_node(host, STRANGER, NULL) == AUTHHOST_NODE_UNAUTHORIZED,
              "new_node stranger");

        AuthhostNode *expected_node = malloc(sizeof *expected_node);
        *expected_node = AUTHHOST_NODE_ASYNC;
        atomic_fetch_add(&pending, 1);
        CHECK(authhost_new_node_async(host, "{\"public_key\":\"pk-async\"}", node_done,
                                      expected_node) == AUTHHOST_RESULT_OK,
              "new_node_async");
    }
    return NULL;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void check_bad_open(const char *config, const char *expected_error) {
    char *error = NULL;
    AuthhostHost *h = authhost_open(config, &error);
    CHECK(h == NULL, "open(%s) should fail", config ? config : "NULL");
    CHECK(error != NULL && strstr(error, expected_error) != NULL,
          "open(%s): error %s, expected it to contain %s", config ? config : "NULL",
          error ? error : "(null)", expected_error);
    authhost_string_free(error);
    authhost_close(h); /* NULL is ignored */
}

/* A blocking user call whose decision must be error (-3) with a message containing `why`. */
static void check_user_error(int64_t code, char *json, const char *why) {
    CHECK(code == -3, "expected -3 for %s, got %lld", why, (long long)code);
    CHECK(json != NULL && strstr(json, "\"decision\":\"error\"") && strstr(json, why),
          "decision JSON %s should name %s", json ? json : "(null)", why);
    authhost_string_free(json);
}

static void boundary_checks(void) {
    check_bad_open(NULL, "config_json is NULL");
    check_bad_open("{\"plugins\": ", "not a valid JSON object");
    check_bad_open("{\"workers\": 0}", "workers must be at least 1");
    check_bad_open("{\"plugin\": \"x\"}", "unknown field `plugin`");
    check_bad_open("{\"plugins\": \"/no/such/policies\"}", "/no/such/policies");
    check_bad_open("{\"plugins\": \"\xff\"}", "not valid UTF-8");
    /* No error out-parameter: still NULL, no crash. */
    CHECK(authhost_open("nonsense", NULL) == NULL, "open without error_out");

    char *json = NULL;
    int64_t code = authhost_user_login(NULL, "{}", "{}", &json);
    check_user_error(code, json, "host is NULL");
    code = authhost_user_login(host, NULL, PRIMARY, &json);
    check_user_error(code, json, "login_info is NULL");
    code = authhost_user_signup(host, "{}", NULL, &json);
    check_user_error(code, json, "node_info is NULL");
    code = authhost_user_login(host, INVALID_UTF8, PRIMARY, &json);
    check_user_error(code, json, "login_info is not valid UTF-8");
    CHECK(authhost_user_login(host, NULL, NULL, NULL) == -3, "NULL everything");

    AuthhostNode node = authhost_new_node(host, NULL, &json);
    CHECK(node == AUTHHOST_NODE_ERROR, "new_node(NULL) gave %d", (int)node);
    CHECK(json && strstr(json, "node_info is NULL"), "new_node(NULL) JSON %s", json);
    authhost_string_free(json);
    CHECK(authhost_new_node(NULL, PRIMARY, NULL) == AUTHHOST_NODE_ERROR, "new_node on NULL host");
    CHECK(authhost_new_node(host, "\xc3\x28", NULL) == AUTHHOST_NODE_ERROR,
          "new_node with invalid UTF-8");

    CHECK(authhost_user_login_async(host, "{}", "{}", NULL, NULL) == AUTHHOST_RESULT_NULL_POINTER,
          "async without a callback");
    CHECK(authhost_user_login_async(NULL, "{}", "{}", user_done, NULL) ==
              AUTHHOST_RESULT_NULL_POINTER,
          "async on a NULL host");
    CHECK(authhost_user_signup_async(host, INVALID_UTF8, "{}", user_done, NULL) ==
              AUTHHOST_RESULT_INVALID_UTF8,
          "async with invalid UTF-8");
    CHECK(authhost_new_node_async(host, NULL, node_done, NULL) == AUTHHOST_RESULT_NULL_POINTER,
          "new_node_async(NULL)");

    CHECK(authhost_status(NULL) == NULL, "status of NULL");
    char *error = NULL;
    CHECK(authhost_reload(NULL, &error) == AUTHHOST_RESULT_NULL_POINTER, "reload(NULL)");
    authhost_string_free(error);
    authhost_string_free(NULL);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s POLICY_FILE\n", argv[0]);
        return 2;
    }
    char config[4096];
    snprintf(config, sizeof config,
             "{\"plugins\":\"%s\",\"db\":\":memory:\",\"workers\":3,\"timeout_ms\":20000}",
             argv[1]);
    char *error = NULL;
    host = authhost_open(config, &error);
    if (!host) {
        fprintf(stderr, "FAILED: authhost_open: %s\n", error ? error : "(no message)");
        authhost_string_free(error);
        return 1;
    }
    CHECK(error == NULL, "no error on success");

    /* The decision JSON of a blocking call. */
    char *json = NULL;
    int64_t code = authhost_user_login(host, "{\"name\":\"alice\"}", PRIMARY, &json);
    CHECK(code == 1, "alice: %lld", (long long)code);
    CHECK(json && strstr(json, "\"decision\":\"user_id\"") && strstr(json, "node.lua"),
          "alice JSON: %s", json);
    authhost_string_free(json);
    code = authhost_user_login(host, "{\"name\":\"raises\"}", PRIMARY, &json);
    check_user_error(code, json, "the policy raised on purpose");

    boundary_checks();

    enum { THREADS = 4 };
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&threads[i], NULL, caller, NULL);
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    /* Generous: the machine may be loaded; every callback still has to come. */
    for (int waited = 0; atomic_load(&pending) > 0 && waited < 120000; waited += 10) sleep_ms(10);
    CHECK(atomic_load(&pending) == 0, "%d async callbacks never came", atomic_load(&pending));
    int expected_async = THREADS * ROUNDS * (int)(N_LOGINS + 2);
    CHECK(atomic_load(&async_right) == expected_async, "async right: %d of %d",
          atomic_load(&async_right), expected_async);

    char *status = authhost_status(host);
    CHECK(status && strstr(status, "\"generation\":1") && strstr(status, "\"workers\":3"),
          "status: %s", status);
    authhost_string_free(status);
    CHECK(authhost_reload(host, &error) == AUTHHOST_RESULT_OK, "reload: %s", error);
    status = authhost_status(host);
    CHECK(status && strstr(status, "\"generation\":2"), "status after reload: %s", status);
    authhost_string_free(status);

    authhost_close(host);
    if (atomic_load(&failures) > 0) {
        fprintf(stderr, "%d check(s) failed\n", atomic_load(&failures));
        return 1;
    }
    printf("ALL OK: %d async decisions checked\n", expected_async);
    return 0;
}
