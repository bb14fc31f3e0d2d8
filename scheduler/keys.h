/* scheduler/keys.h — CURVE keys and the default paths of the distributed
 * runner (issue 5).
 *
 * Conventions (also in docs/protocol.md, "Security"):
 *   <config> = $XDG_CONFIG_HOME/qvac, or ~/.config/qvac     (qv_paths_config_dir)
 *   <data>   = $XDG_DATA_HOME/qvac/scheduler, or
 *              ~/.local/share/qvac/scheduler                 (qv_paths_data_dir;
 *              `qvac scheduler --data DIR` overrides it)
 *   scheduler keypair      <data>/scheduler.key   (0600)
 *   scheduler public key   <data>/scheduler.pub   ("public Z85\n")
 *   the account's client   <config>/client.key    (0600; the scheduler admits
 *                          it at start, so `qvac submit` from the same account
 *                          and machine needs no set-up)
 *   a worker's key         <cache-dir>/worker.key (0600)
 *   A client finds the scheduler's public key from --scheduler-key, else env
 *   QVAC_SCHEDULER_KEY, else (same account and machine)
 *   <default data dir>/scheduler.pub.
 *   An enrollment token, as `qvac token` prints it, is
 *   "<32 hex>_<scheduler public Z85>" (the underscore is not in the Z85
 *   alphabet), so `qvac worker --join URL --token T` needs nothing else.
 *
 * Key files: "public Z85\nsecret Z85\n" (a .key) or "public Z85\n" (a .pub);
 * Z85 keys are 40 characters. Files are created 0600 in folders created 0700.
 */
#ifndef QV_SCHED_KEYS_H
#define QV_SCHED_KEYS_H

#include <stddef.h>

#include "common/status.h"

#define QV_KEY_Z85 41 /* 40 Z85 characters + NUL */
#define QV_TOKEN_SEP '_'

typedef struct qv_keypair {
    char pub[41], sec[41]; /* Z85, 40 chars + NUL */
} qv_keypair;

/* 1 if this libzmq supports CURVE (zmq_has("curve")), else 0. */
int qv_curve_available(void);

/* Reads the keypair at path; when the file does not exist, creates it (mode
 * 0600, with zmq_curve_keypair; its folder 0700 if missing). A file that
 * exists but is malformed is QV_ERR_CORRUPT (it is never overwritten). */
qv_status qv_keys_load_or_create(const char *path, qv_keypair *kp, qv_err *err);

/* Reads a public key file ("public Z85\n"; a .key file works too: its first
 * line is the public key). */
qv_status qv_keys_load_public(const char *path, char pub[41], qv_err *err);

/* Writes "public Z85\n" to path (mode 0644, atomically via rename). */
qv_status qv_keys_write_public(const char *path, const char pub[41],
                               qv_err *err);

/* QV_OK if z85 is exactly 40 characters of the Z85 alphabet, else
 * QV_ERR_INVALID. */
qv_status qv_keys_valid(const char *z85);

/* Splits a token "<32 hex>_<the scheduler's public key in 64 hex digits>"
 * (or, as older versions printed it, "<32 hex>_<Z85 key>") into its secret
 * (33 bytes) and the scheduler's public key in Z85 (41 bytes); either
 * output may be NULL. A bare "<32 hex>" is accepted with pub set to "". */
qv_status qv_token_split(const char *token, char secret[33], char pub[41],
                         qv_err *err);

/* The token `qvac token` prints: secret, '_', the key in hex. Hex and '_'
 * only, so it pastes into a shell as it is (Z85 has $ & ) > { !). */
#define QV_TOKEN_TEXT (32 + 1 + 64 + 1)
qv_status qv_token_format(const char secret[33], const char pub[41], char *out,
                          size_t n, qv_err *err);

/* s as one shell word: unchanged when it has only characters no shell
 * treats specially, else in single quotes (' written as '\''). Returns the
 * length it needs (snprintf-like; out is cut and terminated when n is too
 * small). For every suggestion printed with a key in it. */
size_t qv_shell_quote(const char *s, char *out, size_t n);

/* $XDG_CONFIG_HOME/qvac, or $HOME/.config/qvac (not created). */
qv_status qv_paths_config_dir(char *buf, size_t n, qv_err *err);
/* $XDG_DATA_HOME/qvac/scheduler, or $HOME/.local/share/qvac/scheduler. */
qv_status qv_paths_data_dir(char *buf, size_t n, qv_err *err);

/* Makes path and its parents (mode 0700 for the ones created). */
qv_status qv_paths_mkdir(const char *path, qv_err *err);

/* Socket options before bind/connect. Server: ZMQ_CURVE_SERVER with our
 * secret key. Client: our keypair and the server's public key. */
qv_status qv_sock_curve_server(void *sock, const qv_keypair *me, qv_err *err);
qv_status qv_sock_curve_client(void *sock, const qv_keypair *me,
                               const char *server_pub, qv_err *err);

#endif
