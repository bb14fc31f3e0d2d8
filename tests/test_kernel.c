/* tests/test_kernel.c — the kernel declarations: defaults are legal,
 * configurations parse and print, constraints reject what they should,
 * enumeration visits exactly the legal configurations. */
#include <criterion/criterion.h>
#include <string.h>

#include "kernels/backend.h"

Test(kernel, every_default_is_legal)
{
    qv_limits lim = {256, {256, 256, 64}, 32768};
    int n = 0;
    for (int i = 0; qv_kernels[i]; i++, n++) {
        const qv_kernel_decl *k = qv_kernels[i];
        qv_config c;
        qv_kernel_default_config(k, &c);
        qv_err e;
        cr_expect_eq(qv_kernel_check_config(k, &c, &lim, &e), QV_OK, "%s: %s",
                     k->name, e.msg);
        cr_expect_str_eq(k->params[0].name, "WG_X");
        cr_expect_str_eq(k->params[1].name, "WG_Y");
        cr_expect(k->n_stages >= 1 && k->n_stages <= QV_MAX_STAGES);
    }
    cr_expect_eq(n, 26); /* 8 matmul-shaped + 18 transformer kernels */
    cr_expect_null(qv_kernel_find("nope"));
    cr_expect_not_null(qv_kernel_find("lora_bwd"));
}

Test(kernel, config_parse_and_format)
{
    const qv_kernel_decl *k = qv_kernel_find("ternary_matmul");
    qv_config c;
    qv_err e;
    cr_assert_eq(qv_config_parse(k, "TX=4, LOCAL=1", &c, &e), QV_OK, "%s", e.msg);
    char buf[128];
    qv_config_format(k, &c, buf, sizeof buf);
    cr_expect_str_eq(buf, "WG_X=16,WG_Y=1,TX=4,TY=4,LOCAL=1,KT=1"); /* TY: its default */
    cr_expect_eq(qv_config_parse(k, "TX=four", &c, &e), QV_ERR_INVALID);
    cr_expect_eq(qv_config_parse(k, "NOPE=1", &c, &e), QV_ERR_INVALID);
    cr_expect(strstr(e.msg, "NOPE") != NULL);
    qv_config_parse(k, "KT=4", &c, NULL);
    cr_expect_eq(qv_kernel_check_config(k, &c, NULL, &e), QV_ERR_INVALID);
    cr_expect(strstr(e.msg, "ternary_matmul: KT = 4 needs LOCAL=1") != NULL, "%s", e.msg);
    qv_config_parse(k, "TX=16,TY=8", &c, NULL); /* 128 outputs: the most */
    cr_expect_eq(qv_kernel_check_config(k, &c, NULL, &e), QV_OK, "%s", e.msg);
    qv_config_parse(k, "TX=32", &c, NULL); /* not one of TX's values */
    cr_expect_eq(qv_kernel_check_config(k, &c, NULL, &e), QV_ERR_INVALID);
    cr_expect_eq(qv_config_parse(k, "TX", &c, &e), QV_ERR_INVALID);
}

Test(kernel, constraints_follow_device_limits)
{
    const qv_kernel_decl *k = qv_kernel_find("f16_matmul");
    qv_config c;
    cr_assert_eq(qv_config_parse(k, "WG_X=32,WG_Y=4,TX=8,TY=2,LOCAL=1,KT=4", &c, NULL), QV_OK);
    /* (4*2 + 32*8) rows x (8*4) floats x 4 bytes = 33792 bytes of local memory */
    cr_expect_eq(k->local_bytes(&c), 33792u);
    qv_limits big = {1024, {1024, 1024, 64}, 1 << 20};
    qv_limits small = {1024, {1024, 1024, 64}, 32768};
    qv_limits narrow = {64, {64, 64, 64}, 1 << 20};
    cr_expect_eq(qv_kernel_check_config(k, &c, &big, NULL), QV_OK);
    qv_err e;
    cr_expect_eq(qv_kernel_check_config(k, &c, &small, &e), QV_ERR_INVALID);
    cr_expect(strstr(e.msg, "local memory") != NULL, "%s", e.msg);
    cr_expect_eq(qv_kernel_check_config(k, &c, &narrow, &e), QV_ERR_INVALID);
    cr_expect(strstr(e.msg, "device limit") != NULL, "%s", e.msg);
}

static int count_and_check(const qv_config *c, void *user)
{
    void **u = user;
    const qv_kernel_decl *k = u[0];
    const qv_limits *lim = u[1];
    cr_assert_eq(qv_kernel_check_config(k, c, lim, NULL), QV_OK);
    (*(size_t *)u[2])++;
    return 0;
}

Test(kernel, enumeration_visits_only_legal_configs)
{
    qv_limits lim = {256, {256, 256, 64}, 16384};
    for (int i = 0; qv_kernels[i]; i++) {
        const qv_kernel_decl *k = qv_kernels[i];
        size_t n = 0, total = 1;
        void *u[3] = {(void *)k, &lim, &n};
        qv_kernel_foreach_config(k, &lim, count_and_check, u);
        for (int p = 0; p < k->n_params; p++)
            total *= (size_t)k->params[p].n_values;
        cr_expect(n > 1 && n <= total, "%s: %zu of %zu", k->name, n, total);
        cr_expect_eq(qv_kernel_count_configs(k, &lim), n);
    }
    /* the full matmul space before limits: 3 WG_X x 3 WG_Y x 20 register
     * tiles (TX 1..16 x TY 1..8, all within 128 outputs) x 3 (LOCAL, KT)
     * pairs (KT=4 needs LOCAL=1) */
    cr_expect_eq(qv_kernel_count_configs(qv_kernel_find("ternary_matmul"), NULL),
                 3u * 3u * 20u * 3u);
}
