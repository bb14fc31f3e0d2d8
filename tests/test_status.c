/* tests/test_status.c — common/status: qv_printable, the one way a text
 * from a file or a peer reaches a log line or a terminal. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/status.h"

Test(status, printable_escapes_controls_c1_and_bytes_that_are_not_utf8)
{
    char out[256];
    qv_printable(out, sizeof out, "a\nb\rc\td\x1b[2J\x7f");
    cr_expect_str_eq(out, "a\\nb\\rc\\td\\x1b[2J\\x7f");
    /* U+009B (CSI for some terminals), encoded in UTF-8 */
    qv_printable(out, sizeof out, "x\xc2\x9b" "31m");
    cr_expect_str_eq(out, "x\\u009b31m");
    /* a lone byte 0x9b, a stray continuation byte, an overlong '/', a
     * surrogate: none is UTF-8 */
    qv_printable(out, sizeof out, "\x9b|\x80|\xc0\xaf|\xed\xa0\x80");
    cr_expect_str_eq(out, "\\x9b|\\x80|\\xc0\\xaf|\\xed\\xa0\\x80");
    /* UTF-8 text stays as it is */
    qv_printable(out, sizeof out, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8f\xb4\xe2\x80\x8d\xe2\x98\xa0");
    cr_expect_str_eq(out, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8f\xb4\xe2\x80\x8d\xe2\x98\xa0");
}

Test(status, printable_cuts_at_a_whole_character)
{
    char out[8];
    qv_printable(out, sizeof out, "abcdefg");
    cr_expect_str_eq(out, "abcdefg");
    qv_printable(out, sizeof out, "abcdefgh");
    cr_expect_str_eq(out, "abcd...");
    qv_printable(out, sizeof out, "ab\xe2\x82\xac\xe2\x82\xac");
    cr_expect_str_eq(out, "ab...");
    qv_printable(out, sizeof out, "\n\n\n\n");
    cr_expect_str_eq(out, "\\n\\n...");
    char one[1];
    qv_printable(one, sizeof one, "abc");
    cr_expect_str_eq(one, "");
}

Test(status, utf8_seq_tells_valid_invalid_and_cut_short)
{
    const unsigned char *e = (const unsigned char *)"\xe2\x82\xac";
    cr_expect_eq(qv_utf8_seq(e, 3), 3);
    cr_expect_eq(qv_utf8_seq(e, 2), -1, "a cut euro sign may still come whole");
    cr_expect_eq(qv_utf8_seq(e, 0), -1);
    cr_expect_eq(qv_utf8_seq((const unsigned char *)"A", 1), 1);
    cr_expect_eq(qv_utf8_seq((const unsigned char *)"\xff", 1), 0);
    cr_expect_eq(qv_utf8_seq((const unsigned char *)"\xe9 ", 2), 0, "Latin-1 e-acute");
    cr_expect_eq(qv_utf8_seq((const unsigned char *)"\xed\xa0\x80", 3), 0, "a surrogate");
    cr_expect_eq(qv_utf8_seq((const unsigned char *)"\xf4\x90\x80\x80", 4), 0, "past U+10FFFF");
    cr_expect_eq(qv_utf8_seq((const unsigned char *)"\xf0\x9f\x8f", 3), -1);
}
