/* Number parsing and formatting that must match Redis 7.0 bit for bit.
 *
 * Redis parses doubles with strtod and does INCRBYFLOAT/HINCRBYFLOAT arithmetic
 * in C `long double` (80-bit extended precision on x86-64), printing the result
 * with "%.17Lf" and trimming trailing zeros. Rust has neither strtod's exact
 * grammar (hex floats, "infinity") nor an extended-precision type, so these few
 * pure functions are written in C. They do no I/O and keep no state: given the
 * same bytes they return the same bytes on every node of the same architecture.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LONG_DOUBLE_CHARS (5 * 1024)

/* Redis's string2d / getDoubleFromObject: 1 on success. */
int raftcache_parse_double(const char *s, size_t len, double *out) {
    char buf[MAX_LONG_DOUBLE_CHARS];
    char *eptr;
    double value;
    if (len == 0 || len >= sizeof(buf)) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (isspace((unsigned char)buf[0])) return 0;
    errno = 0;
    value = strtod(buf, &eptr);
    if ((size_t)(eptr - buf) != len) return 0;
    if (errno == ERANGE && (value == HUGE_VAL || value == -HUGE_VAL || value == 0)) return 0;
    if (isnan(value)) return 0;
    *out = value;
    return 1;
}

/* Redis 7.0's string2ld: 1 on success. The whole text must parse: a value
 * with an embedded NUL ("1\0002") is not a number, as redis-server 7.0.15
 * answers (strtold alone would stop at the NUL and read 1). */
static int string2ld(const char *s, size_t slen, long double *dp) {
    char buf[MAX_LONG_DOUBLE_CHARS];
    long double value;
    char *eptr;
    if (slen == 0 || slen >= sizeof(buf)) return 0;
    memcpy(buf, s, slen);
    buf[slen] = '\0';
    errno = 0;
    value = strtold(buf, &eptr);
    if (isspace((unsigned char)buf[0]) || eptr[0] != '\0' ||
        (size_t)(eptr - buf) != slen ||
        ((errno == ERANGE) && (value == HUGE_VAL || value == -HUGE_VAL || value == 0)) ||
        errno == EINVAL || isnan(value))
        return 0;
    *dp = value;
    return 1;
}

/* Redis's ld2string(..., LD_STR_HUMAN). Returns the length, or 0 on failure. */
static int ld2string_human(char *buf, size_t len, long double value) {
    int l;
    if (isinf(value)) return 0;
    l = snprintf(buf, len, "%.17Lf", value);
    if (l < 0 || (size_t)l + 1 > len) return 0;
    if (strchr(buf, '.') != NULL) {
        char *p = buf + l - 1;
        while (*p == '0') { p--; l--; }
        if (*p == '.') l--;
    }
    if (l == 2 && buf[0] == '-' && buf[1] == '0') { buf[0] = '0'; l = 1; }
    return l;
}

/* Classifies `s` as getLongDoubleFromObject would parse it: 0 if it is not a
 * valid long double, 1 if it is finite, 2 if it is infinite. */
int raftcache_classify_long_double(const char *s, size_t len) {
    long double v;
    if (!string2ld(s, len, &v)) return 0;
    return isinf(v) ? 2 : 1;
}

/* INCRBYFLOAT arithmetic: cur + incr, formatted the Redis way into out.
 * Returns the length written (> 0), -1 if cur is not a float, -2 if incr is not
 * a float, -3 if the result is NaN or infinite, -4 if it does not fit. */
int raftcache_ld_add(const char *cur, size_t cur_len, const char *incr, size_t incr_len,
                     char *out, size_t out_len) {
    long double a, b, r;
    int l;
    if (!string2ld(cur, cur_len, &a)) return -1;
    if (!string2ld(incr, incr_len, &b)) return -2;
    r = a + b;
    if (isnan(r) || isinf(r)) return -3;
    l = ld2string_human(out, out_len, r);
    if (l <= 0) return -4;
    return l;
}
