/*
 * A libssh client for kexproxy's tests: connect, run the key exchange, report, disconnect.
 *
 * Usage: libssh_client HOST PORT [SSH_OPTIONS_NAME=VALUE ...]
 *
 * Each NAME=VALUE is handed to ssh_options_set() exactly as written, NAME being the
 * option's name in libssh.h (SSH_OPTIONS_KEY_EXCHANGE, SSH_OPTIONS_CIPHERS_C_S, ...), so
 * a test applies a recipe's libssh step as a user's program would. The client reads no
 * ssh_config and no known_hosts, so what it sends is libssh's own defaults plus the
 * options given; authentication is never attempted, because reaching it means the key
 * exchange completed.
 *
 * Exit status: 0 when the key exchange completed ("negotiated: ..." on stdout),
 * 1 when it did not ("libssh: <libssh's error text>" on stderr), 2 for bad arguments or
 * an option libssh refused (its error text on stderr).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libssh/libssh.h>

/* The string-valued options a recipe step may set, by their names in libssh.h. */
static const struct {
    const char *name;
    enum ssh_options_e option;
} string_options[] = {
    {"SSH_OPTIONS_KEY_EXCHANGE", SSH_OPTIONS_KEY_EXCHANGE},
    {"SSH_OPTIONS_HOSTKEYS", SSH_OPTIONS_HOSTKEYS},
    {"SSH_OPTIONS_CIPHERS_C_S", SSH_OPTIONS_CIPHERS_C_S},
    {"SSH_OPTIONS_CIPHERS_S_C", SSH_OPTIONS_CIPHERS_S_C},
    {"SSH_OPTIONS_HMAC_C_S", SSH_OPTIONS_HMAC_C_S},
    {"SSH_OPTIONS_HMAC_S_C", SSH_OPTIONS_HMAC_S_C},
    {"SSH_OPTIONS_COMPRESSION", SSH_OPTIONS_COMPRESSION},
    {"SSH_OPTIONS_COMPRESSION_C_S", SSH_OPTIONS_COMPRESSION_C_S},
    {"SSH_OPTIONS_COMPRESSION_S_C", SSH_OPTIONS_COMPRESSION_S_C},
    {"SSH_OPTIONS_PUBLICKEY_ACCEPTED_TYPES", SSH_OPTIONS_PUBLICKEY_ACCEPTED_TYPES},
};

static const char *or_none(const char *text)
{
    return text != NULL ? text : "none";
}

/* Sets one NAME=VALUE argument; returns 0, or -1 after saying why on stderr. */
static int set_named_option(ssh_session session, const char *argument)
{
    const char *equals = strchr(argument, '=');
    size_t name_length;
    size_t i;

    if (equals == NULL) {
        fprintf(stderr, "libssh_client: expected NAME=VALUE, got \"%s\"\n", argument);
        return -1;
    }
    name_length = (size_t)(equals - argument);
    for (i = 0; i < sizeof(string_options) / sizeof(string_options[0]); i++) {
        if (strlen(string_options[i].name) == name_length &&
            strncmp(string_options[i].name, argument, name_length) == 0) {
            if (ssh_options_set(session, string_options[i].option, equals + 1) != SSH_OK) {
                fprintf(stderr, "libssh: %s\n", ssh_get_error(session));
                return -1;
            }
            return 0;
        }
    }
    fprintf(stderr, "libssh_client: unknown option %.*s\n", (int)name_length, argument);
    return -1;
}

static void print_negotiated(ssh_session session)
{
    ssh_key key = NULL;
    const char *host_key = "none";

    if (ssh_get_server_publickey(session, &key) == SSH_OK) {
        host_key = ssh_key_type_to_char(ssh_key_type(key));
    }
    printf("negotiated: kex=%s host_key_type=%s cipher_c2s=%s cipher_s2c=%s "
           "mac_c2s=%s mac_s2c=%s server_banner=%s\n",
           or_none(ssh_get_kex_algo(session)),
           or_none(host_key),
           or_none(ssh_get_cipher_out(session)),
           or_none(ssh_get_cipher_in(session)),
           or_none(ssh_get_hmac_out(session)),
           or_none(ssh_get_hmac_in(session)),
           or_none(ssh_get_serverbanner(session)));
    ssh_key_free(key);
}

int main(int argc, char **argv)
{
    ssh_session session;
    int process_config = 0;
    long timeout = 20;
    int i;
    int status;

    if (argc < 3) {
        fprintf(stderr, "usage: %s HOST PORT [SSH_OPTIONS_NAME=VALUE ...]\n", argv[0]);
        return 2;
    }
    session = ssh_new();
    if (session == NULL) {
        fprintf(stderr, "libssh_client: ssh_new failed\n");
        return 2;
    }
    if (ssh_options_set(session, SSH_OPTIONS_PROCESS_CONFIG, &process_config) != SSH_OK ||
        ssh_options_set(session, SSH_OPTIONS_HOST, argv[1]) != SSH_OK ||
        ssh_options_set(session, SSH_OPTIONS_PORT_STR, argv[2]) != SSH_OK ||
        ssh_options_set(session, SSH_OPTIONS_USER, "kexproxy") != SSH_OK ||
        ssh_options_set(session, SSH_OPTIONS_TIMEOUT, &timeout) != SSH_OK ||
        ssh_options_set(session, SSH_OPTIONS_KNOWNHOSTS, "/dev/null") != SSH_OK ||
        ssh_options_set(session, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null") != SSH_OK) {
        fprintf(stderr, "libssh: %s\n", ssh_get_error(session));
        ssh_free(session);
        return 2;
    }
    for (i = 3; i < argc; i++) {
        if (set_named_option(session, argv[i]) != 0) {
            ssh_free(session);
            return 2;
        }
    }

    if (ssh_connect(session) != SSH_OK) {
        fprintf(stderr, "libssh: %s\n", ssh_get_error(session));
        status = 1;
    } else {
        print_negotiated(session);
        ssh_disconnect(session);
        status = 0;
    }
    ssh_free(session);
    return status;
}
