/*
 * The README's C example as a whole program: a database node asks the bundled policy
 * (plugins/policy.lua, on ./authhost.db) each question once, blocking and async.
 *
 *   cc -o node tests/c/node.c $(pkg-config --cflags --libs authhost)
 *   ./node
 *
 * Prints one line per answer; exits 1 if the host does not start.
 */
#include <pthread.h>
#include <stdio.h>

#include <authhost.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t answered = PTHREAD_COND_INITIALIZER;
static int pending = 1;

/* Runs on a worker thread with the decision of the async login. */
static void on_done(void *user_data, int64_t code, const char *decision_json) {
  (void)decision_json;
  pthread_mutex_lock(&lock);
  printf("%s (async): %lld\n", (const char *)user_data, (long long)code);
  pending = 0;
  pthread_cond_signal(&answered);
  pthread_mutex_unlock(&lock);
}

int main(void) {
  const char *login_json = "{\"name\":\"alice\",\"password\":\"wonderland\"}";
  const char *wrong_json = "{\"name\":\"alice\",\"password\":\"looking-glass\"}";
  const char *node_json = "{\"public_key\":\"pk-office\"}";
  void *user_data = "alice";

  char *error = NULL;
  AuthhostHost *host = authhost_open("{\"plugins\":\"plugins\",\"workers\":4}", &error);
  if (!host) { fprintf(stderr, "%s\n", error); authhost_string_free(error); return 1; }
  int64_t code = authhost_user_login(host, login_json, node_json, NULL);   /* id, 0, -1, -3 */
  printf("alice: %lld\n", (long long)code);
  printf("alice, wrong password: %lld\n",
         (long long)authhost_user_login(host, wrong_json, node_json, NULL));
  AuthhostNode role = authhost_new_node(host, node_json, NULL);  /* AUTHHOST_NODE_PRIMARY … */
  printf("pk-office: %s\n", role == AUTHHOST_NODE_PRIMARY ? "primary" : "not primary");
  authhost_user_login_async(host, login_json, node_json, on_done, user_data);
  pthread_mutex_lock(&lock);
  while (pending) pthread_cond_wait(&answered, &lock);
  pthread_mutex_unlock(&lock);
  char *status = authhost_status(host);
  printf("status: %.14s…\n", status);
  authhost_string_free(status);
  authhost_close(host);
  return 0;
}
