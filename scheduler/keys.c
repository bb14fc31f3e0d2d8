/* scheduler/keys.c — CURVE key files and default paths (see keys.h). */
#include "scheduler/keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "common/file.h"

static const char z85_alpha[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    ".-:+=^!/*?&<>()[]{}@%$#";

int qv_curve_available(void) { return zmq_has("curve") ? 1 : 0; }

qv_status qv_keys_valid(const char *z85) {
    if (!z85 || strlen(z85) != 40) return QV_ERR_INVALID;
    for (size_t i = 0; i < 40; i++)
        if (!strchr(z85_alpha, z85[i]) || z85[i] == '\0') return QV_ERR_INVALID;
    return QV_OK;
}

qv_status qv_token_split(const char *token, char secret[33], char pub[41],
                         qv_err *err) {
    if (!token) return qv_fail(err, QV_ERR_INVALID, "token: none given");
    size_t len = strlen(token);
    if (len < 32)
        return qv_fail(err, QV_ERR_INVALID,
                       "token: too short (expected 32 hex digits, an underscore "
                       "and the scheduler's key, as `qvac token` prints it)");
    for (size_t i = 0; i < 32; i++) {
        char c = token[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
              (c >= 'A' && c <= 'F')))
            return qv_fail(err, QV_ERR_INVALID,
                           "token: character %zu is not a hex digit; copy the "
                           "token exactly as `qvac token` prints it", i + 1);
    }
    if (len == 32) {
        if (pub) pub[0] = '\0';
    } else if (len == 33 + 64 && token[32] == QV_TOKEN_SEP) {
        /* the key in hex (what `qvac token` prints: nothing a shell reads) */
        uint8_t raw[32];
        for (size_t i = 0; i < 32; i++) {
            int v = 0;
            for (int k = 0; k < 2; k++) {
                char c = token[33 + 2 * i + (size_t)k];
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                      : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
                if (d < 0)
                    return qv_fail(err, QV_ERR_INVALID,
                                   "token: character %zu is not a hex digit; copy the "
                                   "token exactly as `qvac token` prints it",
                                   33 + 2 * i + (size_t)k + 1);
                v = v * 16 + d;
            }
            raw[i] = (uint8_t)v;
        }
        char z[41];
        if (!zmq_z85_encode(z, raw, 32))
            return qv_fail(err, QV_ERR_INVALID, "token: the scheduler's key cannot be read");
        if (pub) memcpy(pub, z, 41);
    } else {
        if (token[32] != QV_TOKEN_SEP || qv_keys_valid(token + 33) != QV_OK)
            return qv_fail(err, QV_ERR_INVALID,
                           "token: expected \"<32 hex>_<the scheduler's key>\" after "
                           "the hex digits; copy the token exactly as `qvac token` "
                           "prints it");
        if (pub) memcpy(pub, token + 33, 41);
    }
    if (secret) {
        for (size_t i = 0; i < 32; i++) {
            char c = token[i];
            secret[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
        }
        secret[32] = '\0';
    }
    return QV_OK;
}

qv_status qv_token_format(const char secret[33], const char pub[41], char *out,
                          size_t n, qv_err *err) {
    uint8_t raw[32];
    if (!secret || strlen(secret) != 32 || qv_keys_valid(pub) != QV_OK ||
        !zmq_z85_decode(raw, pub))
        return qv_fail(err, QV_ERR_INVALID, "token: a secret of 32 hex digits and a "
                       "Z85 key are needed");
    if (n < QV_TOKEN_TEXT)
        return qv_fail(err, QV_ERR_INVALID, "token: no room");
    memcpy(out, secret, 32);
    out[32] = QV_TOKEN_SEP;
    for (size_t i = 0; i < 32; i++)
        snprintf(out + 33 + 2 * i, 3, "%02x", raw[i]);
    return QV_OK;
}

size_t qv_shell_quote(const char *s, char *out, size_t n) {
    /* '...' with each ' written as '\'' : a shell reads it back unchanged */
    size_t o = 0;
    int plain = *s != '\0';
    for (const char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
              (*c >= '0' && *c <= '9') || strchr("_-./:,=@%+", *c)))
            plain = 0;
    if (plain)
        return (size_t)snprintf(out, n, "%s", s);
#define PUT(ch) do { if (o + 1 < n) out[o] = (ch); o++; } while (0)
    PUT('\'');
    for (const char *c = s; *c; c++) {
        if (*c == '\'') {
            PUT('\''); PUT('\\'); PUT('\''); PUT('\'');
        } else {
            PUT(*c);
        }
    }
    PUT('\'');
#undef PUT
    if (n)
        out[o < n ? o : n - 1] = '\0';
    return o;
}

qv_status qv_paths_mkdir(const char *path, qv_err *err) {
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf)
        return qv_fail(err, QV_ERR_INVALID, "folder path '%s': empty or too long", path);
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return qv_fail(err, QV_ERR_IO, "folder '%s': cannot create it (%s)",
                           buf, strerror(errno));
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return qv_fail(err, QV_ERR_IO, "'%s' is not a folder", path);
    return QV_OK;
}

static qv_status parent_mkdir(const char *path, qv_err *err) {
    char dir[4096];
    size_t len = strlen(path);
    if (len >= sizeof dir)
        return qv_fail(err, QV_ERR_INVALID, "key file path too long: '%s'", path);
    memcpy(dir, path, len + 1);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return QV_OK;
    *slash = '\0';
    return qv_paths_mkdir(dir, err);
}

/* Reads up to two lines of a key file. */
static qv_status read_lines(const char *path, char l1[41], char l2[41],
                            int want2, qv_err *err) {
    FILE *f = fopen(path, "r");
    if (!f)
        return qv_fail(err, errno == ENOENT ? QV_ERR_NOT_FOUND : QV_ERR_IO,
                       "key file '%s': cannot open it (%s)", path, strerror(errno));
    char line[128];
    char *outs[2] = {l1, l2};
    qv_status st = QV_OK;
    for (int i = 0; i < (want2 ? 2 : 1); i++) {
        if (!fgets(line, sizeof line, f)) {
            st = qv_fail(err, QV_ERR_CORRUPT,
                         "key file '%s': line %d missing (expected a 40-character "
                         "Z85 key per line); delete or fix the file", path, i + 1);
            break;
        }
        line[strcspn(line, "\r\n")] = '\0';
        if (qv_keys_valid(line) != QV_OK) {
            st = qv_fail(err, QV_ERR_CORRUPT,
                         "key file '%s': line %d is not a 40-character Z85 key; "
                         "delete or fix the file", path, i + 1);
            break;
        }
        memcpy(outs[i], line, 41);
    }
    fclose(f);
    return st;
}

qv_status qv_keys_load_public(const char *path, char pub[41], qv_err *err) {
    return read_lines(path, pub, NULL, 0, err);
}

static qv_status write_file(const char *path, const char *text, mode_t mode,
                            int exclusive, qv_err *err) {
    char tmp[4200];
    const char *target = path;
    if (!exclusive) {
        if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
            return qv_fail(err, QV_ERR_INVALID, "path too long: '%s'", path);
        target = tmp;
    }
    int fd = open(target, O_WRONLY | O_CREAT | (exclusive ? O_EXCL : O_TRUNC), mode);
    if (fd < 0)
        return qv_fail(err, QV_ERR_IO, "key file '%s': cannot create it (%s)",
                       target, strerror(errno));
    if (qv_write_all(fd, text, strlen(text))) {
        int e = errno;
        close(fd);
        unlink(target);
        return qv_fail(err, QV_ERR_IO, "key file '%s': write failed (%s)",
                       target, strerror(e));
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(target);
        return qv_fail(err, QV_ERR_IO, "key file '%s': cannot flush it (%s)",
                       target, strerror(e));
    }
    if (!exclusive && rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return qv_fail(err, QV_ERR_IO, "key file '%s': cannot rename into place (%s)",
                       path, strerror(e));
    }
    return QV_OK;
}

qv_status qv_keys_write_public(const char *path, const char pub[41], qv_err *err) {
    if (qv_keys_valid(pub) != QV_OK)
        return qv_fail(err, QV_ERR_INVALID, "public key: not a 40-character Z85 key");
    qv_status st = parent_mkdir(path, err);
    if (st != QV_OK) return st;
    char text[64];
    snprintf(text, sizeof text, "%s\n", pub);
    return write_file(path, text, 0644, 0, err);
}

qv_status qv_keys_load_or_create(const char *path, qv_keypair *kp, qv_err *err) {
    memset(kp, 0, sizeof *kp);
    qv_status st = read_lines(path, kp->pub, kp->sec, 1, err);
    if (st != QV_ERR_NOT_FOUND) return st;
    if (!qv_curve_available())
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "key file '%s': this libzmq has no CURVE support; install "
                       "libzmq built with libsodium", path);
    st = parent_mkdir(path, err);
    if (st != QV_OK) return st;
    if (zmq_curve_keypair(kp->pub, kp->sec) != 0)
        return qv_fail(err, QV_ERR_UNSUPPORTED, "zmq_curve_keypair failed (%s)",
                       zmq_strerror(zmq_errno()));
    char text[96];
    snprintf(text, sizeof text, "%s\n%s\n", kp->pub, kp->sec);
    st = write_file(path, text, 0600, 1, err);
    if (st != QV_OK && errno == EEXIST) /* another process made it: use theirs */
        return read_lines(path, kp->pub, kp->sec, 1, err);
    return st;
}

static qv_status xdg_dir(const char *env, const char *fallback, const char *sub,
                         char *buf, size_t n, qv_err *err) {
    const char *base = getenv(env);
    int w;
    if (base && base[0] == '/') {
        w = snprintf(buf, n, "%s/%s", base, sub);
    } else {
        const char *home = getenv("HOME");
        if (!home || !home[0])
            return qv_fail(err, QV_ERR_NOT_FOUND,
                           "neither %s nor HOME is set; set one or pass the "
                           "folder explicitly", env);
        w = snprintf(buf, n, "%s/%s/%s", home, fallback, sub);
    }
    if (w < 0 || (size_t)w >= n)
        return qv_fail(err, QV_ERR_INVALID, "%s: path too long", env);
    return QV_OK;
}

qv_status qv_paths_config_dir(char *buf, size_t n, qv_err *err) {
    return xdg_dir("XDG_CONFIG_HOME", ".config", "qvac", buf, n, err);
}

qv_status qv_paths_data_dir(char *buf, size_t n, qv_err *err) {
    return xdg_dir("XDG_DATA_HOME", ".local/share", "qvac/scheduler", buf, n, err);
}

qv_status qv_sock_curve_server(void *sock, const qv_keypair *me, qv_err *err) {
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, me->sec, 40) != 0)
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "CURVE server setup failed (%s); is libzmq built with "
                       "libsodium?", zmq_strerror(zmq_errno()));
    return QV_OK;
}

qv_status qv_sock_curve_client(void *sock, const qv_keypair *me,
                               const char *server_pub, qv_err *err) {
    if (qv_keys_valid(server_pub) != QV_OK)
        return qv_fail(err, QV_ERR_INVALID,
                       "scheduler public key: not a 40-character Z85 key; pass "
                       "--scheduler-key or set QVAC_SCHEDULER_KEY");
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_pub, 40) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, me->pub, 40) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, me->sec, 40) != 0)
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "CURVE client setup failed (%s); is libzmq built with "
                       "libsodium?", zmq_strerror(zmq_errno()));
    return QV_OK;
}
