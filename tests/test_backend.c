/* tests/test_backend.c — the backend seam on every device present: device
 * listing, byte accounting, and bad input that must come back as an error
 * (never a crash): zero sizes, oversized buffers, unknown kernels, wrong
 * argument lists, mismatched shapes, illegal configurations. */
#include <criterion/criterion.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/ternary.h"

static qv_devlist *devs;

static void open_devs(void)
{
    qv_err e;
    cr_assert_eq(qv_devlist_open(&devs, &e), QV_OK, "%s", e.msg);
    cr_assert(devs->n >= 1);
}

static void close_devs(void) { qv_devlist_destroy(&devs); }

TestSuite(backend, .init = open_devs, .fini = close_devs);

Test(backend, device_list_is_sane)
{
    cr_expect_str_eq(devs->dev[0]->info.id, "ref");
    for (size_t i = 0; i < devs->n; i++) {
        const qv_device_info *d = &devs->dev[i]->info;
        cr_expect_eq(strlen(d->fingerprint), 16, "%s", d->id);
        cr_expect(d->limits.max_wg_size >= 1, "%s", d->id);
        cr_expect(d->max_alloc_bytes >= 1, "%s", d->id);
        cr_expect_eq(qv_devlist_find(devs, d->id), devs->dev[i]);
        for (size_t j = 0; j < i; j++)
            cr_expect_str_neq(d->id, devs->dev[j]->info.id);
    }
    cr_expect_null(qv_devlist_find(devs, "opencl:99"));
    /* ids and fingerprints are stable across opens */
    qv_devlist *again = NULL;
    cr_assert_eq(qv_devlist_open(&again, NULL), QV_OK);
    cr_assert_eq(again->n, devs->n);
    for (size_t i = 0; i < devs->n; i++) {
        cr_expect_str_eq(again->dev[i]->info.id, devs->dev[i]->info.id);
        cr_expect_str_eq(again->dev[i]->info.fingerprint,
                         devs->dev[i]->info.fingerprint);
    }
    qv_devlist_destroy(&again);
    cr_expect_null(again);
}

Test(backend, fingerprint_depends_on_each_field)
{
    qv_device_info a;
    memset(&a, 0, sizeof a);
    strcpy(a.vendor, "v");
    strcpy(a.name, "n");
    strcpy(a.driver, "1.0");
    a.compute_units = 8;
    a.global_mem_bytes = 1 << 30;
    qv_device_fingerprint(&a);
    qv_device_info b = a;
    b.compute_units = 16;
    qv_device_fingerprint(&b);
    cr_expect_str_neq(a.fingerprint, b.fingerprint);
    b = a;
    strcpy(b.driver, "1.1");
    qv_device_fingerprint(&b);
    cr_expect_str_neq(a.fingerprint, b.fingerprint);
    b = a;
    b.global_mem_bytes = 2u << 30;
    qv_device_fingerprint(&b);
    cr_expect_str_neq(a.fingerprint, b.fingerprint); /* a GPU's memory counts */
    b = a;
    qv_device_fingerprint(&b);
    cr_expect_str_eq(a.fingerprint, b.fingerprint);
    /* a CPU device's memory is the host's free memory: left out */
    a.is_cpu = b.is_cpu = 1;
    b.global_mem_bytes = 3u << 30;
    qv_device_fingerprint(&a);
    qv_device_fingerprint(&b);
    cr_expect_str_eq(a.fingerprint, b.fingerprint);
}

Test(backend, byte_accounting_is_exact)
{
    for (size_t i = 0; i < devs->n; i++) {
        qv_device *d = devs->dev[i];
        qv_buffer *a = NULL, *b = NULL, *c = NULL;
        uint64_t base = qv_device_current_bytes(d);
        qv_device_reset_peak(d);
        qv_err e;
        cr_assert_eq(qv_buffer_new(d, 1000, &a, &e), QV_OK, "%s: %s", d->info.id, e.msg);
        cr_assert_eq(qv_buffer_new(d, 3, &b, &e), QV_OK, "%s: %s", d->info.id, e.msg);
        cr_expect_eq(qv_device_current_bytes(d), base + 1003, "%s", d->info.id);
        qv_buffer_destroy(&a);
        cr_expect_null(a);
        cr_assert_eq(qv_buffer_new(d, 500, &c, &e), QV_OK);
        cr_expect_eq(qv_device_current_bytes(d), base + 503);
        cr_expect_eq(qv_device_peak_bytes(d), base + 1003, "%s", d->info.id);
        qv_buffer_destroy(&b);
        qv_buffer_destroy(&c);
        qv_buffer_destroy(&c); /* safe twice */
        cr_expect_eq(qv_device_current_bytes(d), base, "%s", d->info.id);
        cr_expect_eq(qv_device_peak_bytes(d), base + 1003);
        qv_device_reset_peak(d);
        cr_expect_eq(qv_device_peak_bytes(d), base);
    }
}

Test(backend, buffers_round_trip)
{
    for (size_t i = 0; i < devs->n; i++) {
        qv_device *d = devs->dev[i];
        unsigned char in[37], out[37];
        for (int j = 0; j < 37; j++)
            in[j] = (unsigned char)(j * 7 + 1);
        qv_buffer *b = NULL;
        cr_assert_eq(qv_buffer_new(d, 37, &b, NULL), QV_OK);
        cr_assert_eq(qv_buffer_write(b, 0, in, 37, NULL), QV_OK);
        memset(out, 0, sizeof out);
        cr_assert_eq(qv_buffer_read(b, 0, out, 37, NULL), QV_OK);
        cr_expect_eq(memcmp(in, out, 37), 0, "%s", d->info.id);
        cr_assert_eq(qv_buffer_write(b, 33, "abcd", 4, NULL), QV_OK);
        cr_assert_eq(qv_buffer_read(b, 30, out, 7, NULL), QV_OK);
        cr_expect_eq(memcmp(out + 3, "abcd", 4), 0, "%s", d->info.id);
        qv_err e;
        cr_expect_eq(qv_buffer_read(b, 30, out, 8, &e), QV_ERR_INVALID);
        cr_expect(strstr(e.msg, d->info.id) != NULL, "%s", e.msg);
        cr_expect_eq(qv_buffer_write(b, 38, in, 0, &e), QV_ERR_INVALID);
        qv_buffer_destroy(&b);
    }
}

Test(backend, bad_buffers_are_errors)
{
    for (size_t i = 0; i < devs->n; i++) {
        qv_device *d = devs->dev[i];
        qv_buffer *b = (qv_buffer *)0x1;
        qv_err e;
        cr_expect_eq(qv_buffer_new(d, 0, &b, &e), QV_ERR_INVALID, "%s", d->info.id);
        cr_expect_null(b);
        size_t huge = (size_t)d->info.max_alloc_bytes + 1;
        cr_expect_eq(qv_buffer_new(d, huge, &b, &e), QV_ERR_NOMEM, "%s", d->info.id);
        cr_expect(strstr(e.msg, "largest allocation") != NULL, "%s", e.msg);
        cr_expect_eq(qv_device_current_bytes(d), 0u);
    }
}

/* A small valid ternary_matmul argument list on device d. */
typedef struct tm_fixture {
    qv_buffer *xq, *xs, *w, *y;
    qv_arg args[8];
} tm_fixture;

static void tm_make(qv_device *d, tm_fixture *f, int M, int N, int K)
{
    cr_assert_eq(qv_buffer_new(d, (size_t)M * K, &f->xq, NULL), QV_OK);
    cr_assert_eq(qv_buffer_new(d, (size_t)M * 4, &f->xs, NULL), QV_OK);
    cr_assert_eq(qv_buffer_new(d, qv_ternary_bytes(N, K), &f->w, NULL), QV_OK);
    cr_assert_eq(qv_buffer_new(d, (size_t)M * N * 4, &f->y, NULL), QV_OK);
    qv_arg a[8] = {QV_ARG_B(f->xq), QV_ARG_B(f->xs), QV_ARG_B(f->w),
                   QV_ARG_B(f->y),  QV_ARG_I(M),     QV_ARG_I(N),
                   QV_ARG_I(K),     QV_ARG_F(1.0f)};
    memcpy(f->args, a, sizeof a);
}

static void tm_free(tm_fixture *f)
{
    qv_buffer_destroy(&f->xq);
    qv_buffer_destroy(&f->xs);
    qv_buffer_destroy(&f->w);
    qv_buffer_destroy(&f->y);
}

Test(backend, bad_launches_are_errors)
{
    for (size_t i = 0; i < devs->n; i++) {
        qv_device *d = devs->dev[i];
        const char *id = d->info.id;
        tm_fixture f;
        tm_make(d, &f, 4, 8, 32);
        qv_err e;
        /* unknown kernel */
        cr_expect_eq(qv_launch(d, "no_such_kernel", NULL, f.args, 8, NULL, &e),
                     QV_ERR_NOT_FOUND, "%s", id);
        cr_expect(strstr(e.msg, "no_such_kernel") != NULL, "%s", e.msg);
        /* wrong argument count and kind */
        cr_expect_eq(qv_launch(d, "ternary_matmul", NULL, f.args, 7, NULL, &e),
                     QV_ERR_INVALID, "%s", id);
        qv_arg a[8];
        memcpy(a, f.args, sizeof a);
        a[4] = QV_ARG_F(4.0f);
        cr_expect_eq(qv_launch(d, "ternary_matmul", NULL, a, 8, NULL, &e),
                     QV_ERR_INVALID, "%s", id);
        /* zero and negative sizes */
        memcpy(a, f.args, sizeof a);
        a[6] = QV_ARG_I(0);
        cr_expect_eq(qv_launch(d, "ternary_matmul", NULL, a, 8, NULL, &e),
                     QV_ERR_INVALID, "%s", id);
        cr_expect(strstr(e.msg, "K = 0") != NULL, "%s", e.msg);
        a[6] = QV_ARG_I(-5);
        cr_expect_eq(qv_launch(d, "ternary_matmul", NULL, a, 8, NULL, &e),
                     QV_ERR_INVALID, "%s", id);
        /* shapes that do not match the buffers */
        memcpy(a, f.args, sizeof a);
        a[5] = QV_ARG_I(9);
        cr_expect_eq(qv_launch(d, "ternary_matmul", NULL, a, 8, NULL, &e),
                     QV_ERR_INVALID, "%s", id);
        cr_expect(strstr(e.msg, "buffer") != NULL, "%s", e.msg);
        /* shapes whose element count overflows int32 */
        a[4] = QV_ARG_I(65536);
        a[5] = QV_ARG_I(65536);
        cr_expect_eq(qv_launch(d, "ternary_matmul", NULL, a, 8, NULL, &e),
                     QV_ERR_INVALID, "%s", id);
        /* illegal configurations */
        const qv_kernel_decl *k = qv_kernel_find("ternary_matmul");
        qv_config c;
        qv_kernel_default_config(k, &c);
        c.v[qv_kernel_param_index(k, "WG_X")] = 3;
        cr_expect_eq(qv_launch(d, "ternary_matmul", &c, f.args, 8, NULL, &e),
                     QV_ERR_INVALID, "%s", id);
        cr_expect(strstr(e.msg, "WG_X = 3") != NULL, "%s", e.msg);
        qv_kernel_default_config(k, &c);
        c.v[0] = 64; /* not among WG_X's legal values */
        cr_expect_eq(qv_launch(d, "ternary_matmul", &c, f.args, 8, NULL, &e),
                     QV_ERR_INVALID, "%s", id);
        /* a buffer from another device */
        if (devs->n > 1) {
            qv_device *other = devs->dev[(i + 1) % devs->n];
            qv_buffer *y2 = NULL;
            cr_assert_eq(qv_buffer_new(other, 4 * 8 * 4, &y2, NULL), QV_OK);
            memcpy(a, f.args, sizeof a);
            a[3] = QV_ARG_B(y2);
            cr_expect_eq(qv_launch(d, "ternary_matmul", NULL, a, 8, NULL, &e),
                         QV_ERR_INVALID, "%s", id);
            qv_buffer_destroy(&y2);
        }
        /* and the valid launch still works after all that */
        cr_expect_eq(qv_launch(d, "ternary_matmul", NULL, f.args, 8, NULL, &e),
                     QV_OK, "%s: %s", id, e.msg);
        cr_expect_eq(qv_device_sync(d, &e), QV_OK);
        tm_free(&f);
    }
}

Test(backend, device_timer_reports_time)
{
    for (size_t i = 0; i < devs->n; i++) {
        qv_device *d = devs->dev[i];
        tm_fixture f;
        tm_make(d, &f, 16, 64, 256);
        uint64_t ns = 0;
        qv_err e;
        cr_assert_eq(qv_launch(d, "ternary_matmul", NULL, f.args, 8, &ns, &e),
                     QV_OK, "%s: %s", d->info.id, e.msg);
        cr_expect(ns > 0, "%s: the device timer measured 0 ns", d->info.id);
        cr_expect(ns < 60ull * 1000000000ull, "%s: %llu ns", d->info.id,
                  (unsigned long long)ns);
        tm_free(&f);
    }
}
